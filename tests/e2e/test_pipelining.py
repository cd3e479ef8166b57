"""RFC 2920 pipelining: MAIL, 100 RCPTs and DATA in one write, every reply
read afterwards in order; the message reaches all 100 Maildirs once each.
A batch followed by the end of the client's input is answered in full."""

import re
import socket

from postern_instance import HELO, SENDER, RawSMTP, crlf, QUEUED_RE, wait_until

N = 100


def test_pipelined_transaction_with_100_recipients(instance):
    rcpts = [f"user{i:03d}@localhost" for i in range(N)]
    with RawSMTP(instance.port) as c:
        code, _ = c.read_reply()
        assert code == 220
        code, ehlo = c.cmd(f"EHLO {HELO}")
        assert code == 250
        assert "PIPELINING" in [k.split()[0].upper() for k in ehlo[1:] if k], ehlo

        batch = [f"MAIL FROM:<{SENDER}>"] + [f"RCPT TO:<{r}>" for r in rcpts] + ["DATA"]
        c.send("".join(line + "\r\n" for line in batch).encode())
        replies = [c.read_reply() for _ in batch]
        assert replies[0] == (250, ["2.1.0 Ok"]), replies[0]
        for r, reply in zip(rcpts, replies[1:-1]):
            assert reply == (250, ["2.1.5 Ok"]), (r, reply)
        assert replies[-1][0] == 354, replies[-1]

        body = crlf(f"From: {SENDER}\nSubject: pipelined\nMessage-ID: <pipelined@{HELO}>\n"
                    "Date: Mon, 01 Jan 2024 00:00:00 +0000\n\n.dot line\npipelined body\n")
        c.send(body.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        code, texts = c.read_reply()
        assert code == 250, texts
        m = QUEUED_RE.match(texts[0])
        assert m, texts
        qid = m["id"]
        assert c.cmd("QUIT") == (221, ["2.0.0 Bye"])

    def delivered_everywhere():
        return all(instance.delivered(r.split("@")[0]) for r in rcpts)

    try:
        wait_until(delivered_everywhere, 60, interval=0.2, what="100 deliveries")
    except AssertionError:
        missing = [r for r in rcpts if not instance.delivered(r.split("@")[0])]
        raise AssertionError(f"no delivery for {len(missing)} recipients, e.g. {missing[:5]}\n"
                             + instance.log_tail())
    instance.wait_log(rf"^{qid}: removed$", program="qmgr", timeout=30)

    for r in rcpts:
        files = instance.delivered(r.split("@")[0])
        assert len(files) == 1, (r, files)
        data = files[0].read_bytes()
        assert data.startswith(f"Return-Path: <{SENDER}>\nX-Original-To: {r}\n"
                               f"Delivered-To: {r}\n".encode()), data[:200]
        assert re.search(rb" id " + qid.encode() + rb"[;\n]", data), data[:400]
        # With more than one recipient the Received header has no "for".
        received = data.split(b"\nReceived: ", 1)[1].split(b"\n", 3)
        assert not any(b"\tfor <" in part for part in received[:3]), received
        assert data.endswith(b"\n\n.dot line\npipelined body\n"), data[-80:]

    assert instance.find_log(rf"^{qid}: from=<{re.escape(SENDER)}>, size=\d+, "
                             rf"nrcpt={N} \(queue active\)$", program="qmgr")
    sent = instance.find_log(rf"^{qid}: to=<user\d{{3}}@localhost>, relay=local, .*"
                             r"dsn=2\.0\.0, status=sent \(delivered to maildir\)$",
                             program="local")
    assert sorted(re.search(r"to=<([^>]+)>", l.text)[1] for l in sent) == rcpts
    instance.wait_queue_empty(10)


MESSAGE = (b"MAIL FROM:<" + SENDER.encode() + b">\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n"
           b"Subject: eof\r\n\r\nbody\r\n.\r\n")


def half_closed(instance, source, data):
    """Send data in one write from source, half-close, and read until the
    server closes: every reply line it sent."""
    import socket
    with socket.create_connection(("127.0.0.1", instance.port), timeout=30,
                                  source_address=(source, 0)) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    lines = out.decode().split("\r\n")
    assert lines[-1] == "", out
    return [line for line in lines[:-1] if line[3:4] == " "]   # last line of each reply


def test_input_ending_after_a_pipelined_batch_is_answered(instance):
    """A client that pipelines and half-closes (the end of its input) gets
    every answer to what it sent before, as from Postfix: a transaction
    without QUIT is queued and answered; the end of input after the answer
    to a message is no lost connection; inside DATA the message is lost
    and so logged; an unfinished last line is not a command; a client that
    sends nothing is lost after CONNECT, with commands=0/0."""
    ehlo = f"EHLO {HELO}\r\n".encode()
    replies = half_closed(instance, "127.0.0.2", ehlo + MESSAGE + b"QUIT\r\n")
    assert [r[:3] for r in replies] == ["220", "250", "250", "250", "354", "250", "221"], replies
    replies = half_closed(instance, "127.0.0.3", ehlo + MESSAGE)
    assert [r[:3] for r in replies] == ["220", "250", "250", "250", "354", "250"], replies
    assert QUEUED_RE.match(replies[-1][4:]), replies
    replies = half_closed(instance, "127.0.0.4", ehlo + MESSAGE[:-3])
    assert [r[:3] for r in replies] == ["220", "250", "250", "250", "354"], replies
    replies = half_closed(instance, "127.0.0.5", ehlo + b"NOOP\r\nNOOP")
    assert replies[2:] == ["250 2.0.0 Ok"], replies
    assert [r[:3] for r in half_closed(instance, "127.0.0.6", b"")] == ["220"]

    wait_until(lambda: len(instance.delivered("alice")) == 2, 30, what="two deliveries")
    instance.wait_log(r"^disconnect from unknown\[127\.0\.0\.2\] ehlo=1 mail=1 rcpt=1 data=1 "
                      r"quit=1 commands=5$", program="smtpd")
    instance.wait_log(r"^disconnect from unknown\[127\.0\.0\.3\] ehlo=1 mail=1 rcpt=1 data=1 "
                      r"commands=4$", program="smtpd")
    instance.wait_log(r"^lost connection after DATA \(22 bytes\) from unknown\[127\.0\.0\.4\]$",
                      program="smtpd")
    instance.wait_log(r"^disconnect from unknown\[127\.0\.0\.4\] ehlo=1 mail=1 rcpt=1 data=0/1 "
                      r"commands=3/4$", program="smtpd")
    instance.wait_log(r"^lost connection after NOOP from unknown\[127\.0\.0\.5\]$",
                      program="smtpd")
    instance.wait_log(r"^disconnect from unknown\[127\.0\.0\.5\] ehlo=1 noop=1 commands=2$",
                      program="smtpd")
    instance.wait_log(r"^lost connection after CONNECT from unknown\[127\.0\.0\.6\]$",
                      program="smtpd")
    instance.wait_log(r"^disconnect from unknown\[127\.0\.0\.6\] commands=0/0$", program="smtpd")
    assert not instance.find_log(r"^lost connection after .* from unknown\[127\.0\.0\.[23]\]")
    instance.wait_queue_empty()
