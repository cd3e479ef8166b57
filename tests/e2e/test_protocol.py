"""SMTP protocol basics: greeting, EHLO keywords, HELO, RSET, NOOP, VRFY,
HELP, unknown commands, QUIT, and the size and recipient limits."""

import re

from postern_instance import wait_until, HELO, HOSTNAME, SENDER, RawSMTP, crlf, simple_message, send_in_session


def test_greeting_and_ehlo_keywords(instance):
    with RawSMTP(instance.port) as c:
        assert c.read_reply() == (220, [f"{HOSTNAME} ESMTP Postern"])
        code, lines = c.cmd(f"EHLO {HELO}")
        assert code == 250
        assert lines[0].split()[0] == HOSTNAME, lines
        keywords = {}
        for line in lines[1:]:
            word, _, arg = line.partition(" ")
            keywords[word.upper()] = arg
        for k in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"):
            assert k in keywords, (k, lines)
        assert keywords["SIZE"] == "10240000", lines
        assert c.cmd("QUIT") == (221, ["2.0.0 Bye"])


def test_helo(instance):
    with RawSMTP(instance.port) as c:
        assert c.read_reply()[0] == 220
        code, lines = c.cmd(f"HELO {HELO}")
        assert code == 250 and len(lines) == 1 and lines[0].startswith(HOSTNAME), lines
        # HELO is enough to send mail.
        assert c.cmd(f"MAIL FROM:<{SENDER}>") == (250, ["2.1.0 Ok"])
        assert c.cmd("RCPT TO:<alice@localhost>") == (250, ["2.1.5 Ok"])
        assert c.cmd("QUIT") == (221, ["2.0.0 Bye"])


def test_simple_commands(instance):
    with RawSMTP(instance.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd("NOOP") == (250, ["2.0.0 Ok"])
        assert c.cmd("RSET") == (250, ["2.0.0 Ok"])
        code, lines = c.cmd("VRFY alice")
        assert code == 252 and lines[0].startswith("2.0.0"), (code, lines)
        code, lines = c.cmd("HELP")
        assert code == 214, (code, lines)
        assert c.cmd("FROBNICATE now") == (500, ["5.5.2 Error: command not recognized"])
        # Commands are case-insensitive.
        assert c.cmd("noop") == (250, ["2.0.0 Ok"])
        # RSET really forgets the transaction: RCPT needs a new MAIL.
        assert c.cmd(f"MAIL FROM:<{SENDER}>") == (250, ["2.1.0 Ok"])
        assert c.cmd("RSET") == (250, ["2.0.0 Ok"])
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 503
        assert c.cmd("QUIT") == (221, ["2.0.0 Bye"])
        # After QUIT the server closes the connection.
        c.sock.settimeout(5)
        assert c.sock.recv(100) == b""


def test_full_transaction_replies(instance):
    with instance.smtp() as s:
        assert s.ehlo(HELO)[0] == 250
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        assert s.rcpt("alice@localhost") == (250, b"2.1.5 Ok")
        code, resp = s.docmd("DATA")
        assert code == 354, resp
        s.send(crlf(simple_message(subject="replies")) + b".\r\n")
        code, resp = s.getreply()
        assert code == 250 and re.fullmatch(rb"2\.0\.0 Ok: queued as [0-9A-Za-z]+", resp), resp
        # A second transaction on the same connection.
        qid2 = send_in_session(s, simple_message(subject="second"), ["alice@localhost"])
        assert qid2 not in resp.decode()
    instance.wait_delivered("alice", 2)


def test_message_size_limit(make_instance):
    inst = make_instance(extra_main=["message_size_limit = 10000"])
    with inst.smtp() as s:
        assert s.ehlo(HELO)[0] == 250
        assert s.esmtp_features.get("size") == "10000", s.esmtp_features
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        assert s.rcpt("alice@localhost") == (250, b"2.1.5 Ok")
        big = simple_message(subject="too big", body=("y" * 99 + "\n") * 200)
        # smtplib raises only when DATA itself is refused; the reply to the
        # final dot is returned.
        assert s.data(crlf(big)) == (552, b"5.3.4 Message size exceeds fixed limit")
        # Nothing was queued, and the session is still usable.
        # cleanup removes its file when smtpd drops the stream; that
        # happens just after (not before) the 552 reaches the client.
        wait_until(lambda: inst.queue_files() == [], 5, what="the refused message's file removed")
        assert s.rset()[0] == 250
        send_in_session(s, simple_message(subject="small"), ["alice@localhost"])
    files = inst.wait_delivered("alice", 1)
    assert len(files) == 1 and b"Subject: small\n" in files[0].read_bytes()


def test_size_parameter_over_limit_refused_at_mail(make_instance):
    inst = make_instance(extra_main=["message_size_limit = 10000"])
    with inst.smtp() as s:
        assert s.ehlo(HELO)[0] == 250
        assert s.mail(SENDER, ["SIZE=20000"]) == (552, b"5.3.4 Message size exceeds fixed limit")
        assert s.mail(SENDER, ["SIZE=2000"]) == (250, b"2.1.0 Ok")


def test_recipient_limit(make_instance):
    inst = make_instance(extra_main=["smtpd_recipient_limit = 5"])
    with inst.smtp() as s:
        assert s.ehlo(HELO)[0] == 250
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        for i in range(5):
            assert s.rcpt(f"r{i}@localhost") == (250, b"2.1.5 Ok")
        assert s.rcpt("r5@localhost") == (452, b"4.5.3 Error: too many recipients")
        code, resp = s.data(crlf(simple_message(subject="five")))
        assert code == 250, resp
    for i in range(5):
        assert len(inst.wait_delivered(f"r{i}", 1)) == 1
    inst.wait_queue_empty(30)
    assert not (inst.mail / "r5").exists()
