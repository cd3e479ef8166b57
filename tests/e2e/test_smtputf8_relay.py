"""SMTPUTF8 end to end (RFC 6531, issue 15): a message received with
`MAIL FROM:<ü@localhost> SMTPUTF8` is relayed with SMTPUTF8 and its address
unquoted to a server that offers SMTPUTF8 (aiosmtpd), returned to its
sender with 5.6.7 when it needs SMTPUTF8 and the server does not offer it
(Postfix's text), and sent plainly when the client asked for SMTPUTF8 but
nothing in the envelope or headers needs it. Log lines, Return-Path and the
DSN write the address unquoted, as Postfix does.
"""

import email
import re

from postern_instance import HELO, RawSMTP, crlf, wait_until
from smtp_peers import Receiver


def utf8_instance(make_instance, utf8_port, plain_port):
    return make_instance(extra_main=[
        "relay_domains = utf8.example, plain.example",
        f"transport_maps = inline:{{ utf8.example=smtp:[127.0.0.1]:{utf8_port}, "
        f"plain.example=smtp:[127.0.0.1]:{plain_port} }}",
        "smtp_tls_security_level = none"])


def send_utf8(inst, sender, rcpts, headers):
    body = "".join(f"{h}\n" for h in headers) + "Subject: utf8\n\nhallo\n"
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        code, ehlo = c.cmd(f"EHLO {HELO}")
        assert "SMTPUTF8" in ehlo, ehlo
        assert c.cmd(f"MAIL FROM:<{sender}> SMTPUTF8")[0] == 250
        for r in rcpts:
            assert c.cmd(f"RCPT TO:<{r}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(crlf(body) + b".\r\n")
        code, texts = c.read_reply()
        assert code == 250, texts
        return texts[0].split()[-1]


def status(inst, qid, rcpt):
    lines = inst.find_log(rf"^{qid}: to=<{re.escape(rcpt)}>, ", program="smtp")
    return lines[-1].text if lines else None


def test_smtputf8_relayed_returned_or_sent_plainly(make_instance):
    utf8 = Receiver("127.0.0.1", smtputf8=True).start()
    plain = Receiver("127.0.0.1", smtputf8=False).start()
    try:
        inst = utf8_instance(make_instance, utf8.port, plain.port)
        # To a server that offers SMTPUTF8: relayed with it, unquoted; the
        # local copy's Return-Path is unquoted too.
        qid = send_utf8(inst, "ü@localhost", ["x@utf8.example", "bob@localhost"],
                        ["From: Jürgen <ü@localhost>"])
        msg = utf8.wait_messages(1)[0]
        assert msg["mail_from"] == "ü@localhost", msg
        assert "SMTPUTF8" in msg["mail_options"], msg["mail_options"]
        head = inst.wait_delivered("bob")[0].read_bytes().split(b"\n\n")[0].decode()
        assert "Return-Path: <ü@localhost>" in head, head
        inst.wait_log(rf"^{qid}: from=<ü@localhost>, size=\d+, nrcpt=2 \(queue active\)$",
                      program="qmgr")
        assert "status=sent" in wait_until(lambda: status(inst, qid, "x@utf8.example"), 30,
                                           what="the relayed status")
        # To a server without SMTPUTF8: returned with 5.6.7.
        qid = send_utf8(inst, "ü@localhost", ["y@plain.example"], ["From: ü@localhost"])
        line = wait_until(lambda: status(inst, qid, "y@plain.example"), 30, what="status")
        assert re.search(rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{plain.port}, .*dsn=5\.6\.7, "
                         r"status=bounced \(SMTPUTF8 is required, but was not offered by host "
                         r"127\.0\.0\.1\[127\.0\.0\.1\]\)$", line), line
        report = inst.wait_delivered("ü")[0].read_bytes()
        dsn = email.message_from_bytes(report)
        text = [p for p in dsn.walk()
                if p.get_content_type() == "message/delivery-status"][0].as_string()
        assert "Status: 5.6.7" in text and "y@plain.example" in text, text
        # A UTF-8 header alone needs SMTPUTF8 too.
        qid = send_utf8(inst, "plain@localhost", ["z@plain.example"], ["X-Name: Jürgen"])
        assert "dsn=5.6.7, status=bounced" in wait_until(
            lambda: status(inst, qid, "z@plain.example"), 30, what="status")
        # Asked for, but nothing needs it: sent without SMTPUTF8.
        qid = send_utf8(inst, "plain@localhost", ["w@plain.example"], ["From: plain@localhost"])
        msg = plain.wait_messages(1)[0]
        assert msg["mail_from"] == "plain@localhost"
        assert "SMTPUTF8" not in msg["mail_options"], msg["mail_options"]
        assert "status=sent" in wait_until(lambda: status(inst, qid, "w@plain.example"), 30,
                                           what="status")
        assert len(plain.messages) == 1
    finally:
        utf8.stop()
        plain.stop()
