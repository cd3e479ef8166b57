"""conf/master.cf's submission (587, STARTTLS) and submissions (465,
smtpd_tls_wrappermode) services, commented as Postfix ships them, work when
uncommented: the shipped file is used as it is with only the service
addresses moved to free loopback ports (smtpd_fixture.shipped_master_cf).

Each logs under its syslog_name, offers AUTH only under TLS, relays for an
authenticated client and refuses everything to an unauthenticated one,
while the plain smtp service on the same instance keeps main.cf's rules.
"""

import re

from postern_instance import HELO, SENDER, free_port, crlf, simple_message
from smtpd_fixture import (TLSRaw, make_cert, plain_response, sasl_lines, shipped_master_cf,
                           tls_lines)
from smtp_peers import Receiver

USERS = {"alice": "alice-pw"}


def services_instance(make_instance, relay_port):
    inst = make_instance(start=False)
    sub, subs = free_port(), free_port()
    inst.write_master_cf(shipped_master_cf(inst.port, sub, subs))
    cert, key = make_cert(inst.root)
    # sasl_lines enables AUTH in main.cf too; the smtp service must not
    # offer it in plain text (smtpd_tls_auth_only), and relays for nobody
    # outside mynetworks.
    inst.write_main_cf(tls_lines(cert, key) + sasl_lines(USERS) + [
        f"relayhost = [127.0.0.1]:{relay_port}", "smtp_tls_security_level = none"])
    inst.start()
    return inst, sub, subs


def send_authenticated(c, rcpt, subject):
    assert c.cmd("AUTH PLAIN " + plain_response("alice", "alice-pw")) == (
        235, ["2.7.0 Authentication successful"])
    assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>") == (250, ["2.1.5 Ok"])
    assert c.cmd("DATA")[0] == 354
    c.send(crlf(simple_message(subject=subject)) + b".\r\n")
    code, texts = c.read_reply()
    assert code == 250, texts


def test_submission_and_submissions_as_shipped(make_instance):
    receiver = Receiver("127.0.0.1").start()
    try:
        inst, sub, subs = services_instance(make_instance, receiver.port)
        # submission: STARTTLS first, then AUTH, then relaying.
        with TLSRaw(sub, source=("127.0.0.2", 0)) as c:
            assert c.read_reply()[0] == 220
            code, ehlo = c.cmd(f"EHLO {HELO}")
            assert "STARTTLS" in ehlo and not any(k.startswith("AUTH") for k in ehlo), ehlo
            assert c.cmd(f"MAIL FROM:<{SENDER}>") == (
                530, ["5.7.0 Must issue a STARTTLS command first"])
            assert c.cmd("STARTTLS")[0] == 220
            c.starttls()
            code, ehlo = c.cmd(f"EHLO {HELO}")
            assert "AUTH PLAIN LOGIN" in ehlo, ehlo
            # Not logged in: not even a local recipient.
            assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
            assert c.cmd("RCPT TO:<dave@localhost>")[0] == 554
            assert c.cmd("RSET")[0] == 250
            send_authenticated(c, "far@example.net", "via submission")
        # submissions: TLS from the first byte, AUTH offered at once.
        with TLSRaw(subs, wrapped=True, source=("127.0.0.2", 0)) as c:
            assert c.read_reply()[0] == 220
            code, ehlo = c.cmd(f"EHLO {HELO}")
            assert "AUTH PLAIN LOGIN" in ehlo and "STARTTLS" not in ehlo, ehlo
            assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
            assert c.cmd("RCPT TO:<far@example.net>")[0] == 554
            assert c.cmd("RSET")[0] == 250
            send_authenticated(c, "far@example.net", "via submissions")
        msgs = receiver.wait_messages(2)
        assert sorted(re.search(rb"Subject: ([^\r\n]*)", m["data"])[1] for m in msgs) == [
            b"via submission", b"via submissions"]
        for m in msgs:
            assert b"with ESMTPSA id" in m["data"], m["data"][:400]
        assert inst.find_log(r"^connect from unknown\[127\.0\.0\.2\]$",
                             program="submission/smtpd")
        assert inst.find_log(r"^connect from unknown\[127\.0\.0\.2\]$",
                             program="submissions/smtpd")
        assert inst.find_log(r"client=unknown\[127\.0\.0\.2\], sasl_method=PLAIN, "
                             r"sasl_username=alice$", program="submissions/smtpd")
        # The smtp service keeps main.cf's rules: no AUTH in plain text, no
        # relaying for outsiders.
        with TLSRaw(inst.port, source=("127.0.0.2", 0)) as c:
            assert c.read_reply()[0] == 220
            code, ehlo = c.cmd(f"EHLO {HELO}")
            assert not any(k.startswith("AUTH") for k in ehlo), ehlo
            assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
            assert c.cmd("RCPT TO:<far@example.net>") == (
                554, ["5.7.1 <far@example.net>: Relay access denied"])
    finally:
        receiver.stop()
