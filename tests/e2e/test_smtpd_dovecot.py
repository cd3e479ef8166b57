"""smtpd AUTH through Dovecot (smtpd_sasl_type = dovecot) against the test
session's private Dovecot (dovecot_fixture.py), on the submission service
of conf/master.cf uncommented (as Postfix's: STARTTLS required, AUTH only
under TLS).

Right and wrong passwords with PLAIN, LOGIN and CRAM-MD5 (a multi-step
mechanism passed through), Postfix's replies and log lines, the user in
the queue file and the Received: header (smtpd_sasl_authenticated_header),
relaying and smtpd_sender_login_maps for authenticated clients, the
mechanism list filtered by smtpd_sasl_security_options, and Dovecot
stopped and started again under a running smtpd: 454 while it is away,
other sessions unaffected, AUTH working again without a restart of
Postern.
"""

import base64
import hashlib
import hmac
import os
import re
import threading
import time

from postern_instance import HELO, QUEUED_RE, crlf, simple_message, wait_until
from smtpd_fixture import TLSRaw, make_cert, plain_response, shipped_master_cf

ALICE, ALICE_PW = "alice@example.com", "alice-pw"
BOB, BOB_PW = "bob@example.com", "bob-pw"
OUTSIDE = ("127.0.0.2", 0)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def dovecot_instance(make_instance, dovecot, path=None, extra_main=(), extra_master=()):
    """An instance with conf/master.cf's submission service enabled (plus
    extra_master -o lines), authenticating through dovecot; returns
    (instance, submission port). path: smtpd_sasl_path (default:
    private/dovecot-auth, a link in the queue to Dovecot's socket)."""
    from postern_instance import free_port
    inst = make_instance(start=False)
    sub_port = free_port()
    cert, key = make_cert(inst.root)
    inst.write_master_cf(shipped_master_cf(inst.port, sub_port, extra_sub=extra_master))
    inst.write_main_cf([f"smtpd_tls_cert_file = {cert}", f"smtpd_tls_key_file = {key}",
                        "smtpd_tls_security_level = may", "smtpd_sasl_type = dovecot",
                        f"smtpd_sasl_path = {path or 'private/dovecot-auth'}",
                        *extra_main])
    (inst.queue / "private").mkdir(mode=0o700, exist_ok=True)
    os.symlink(dovecot.auth_socket, inst.queue / "private" / "dovecot-auth")
    inst.start()
    return inst, sub_port


def tls_session(port, source=None):
    c = TLSRaw(port, source=source)
    assert c.read_reply()[0] == 220
    code, ehlo = c.cmd(f"EHLO {HELO}")
    assert code == 250 and not any(k.startswith("AUTH") for k in ehlo), ehlo
    assert c.cmd("STARTTLS")[0] == 220
    c.starttls()
    code, ehlo = c.cmd(f"EHLO {HELO}")
    assert code == 250, ehlo
    c.ehlo = ehlo
    return c


def test_plain_and_login_through_dovecot_on_submission(make_instance, dovecot):
    inst, sub = dovecot_instance(
        make_instance, dovecot,
        extra_main=["smtpd_sasl_authenticated_header = yes",
                    f"smtpd_sender_login_maps = inline:{{ {ALICE}={ALICE}, {BOB}={BOB} }}"],
        extra_master=["-o smtpd_sender_restrictions=reject_sender_login_mismatch"])
    # No AUTH before STARTTLS (smtpd_tls_auth_only = yes).
    with TLSRaw(sub) as c:
        assert c.read_reply()[0] == 220
        code, ehlo = c.cmd(f"EHLO {HELO}")
        assert "STARTTLS" in ehlo and not any(k.startswith("AUTH") for k in ehlo), ehlo
        assert c.cmd("AUTH PLAIN " + plain_response(ALICE, ALICE_PW)) == (
            530, ["5.7.0 Must issue a STARTTLS command first"])
    with tls_session(sub, source=OUTSIDE) as c:
        assert "AUTH PLAIN LOGIN CRAM-MD5" in c.ehlo, c.ehlo
        # Not authenticated: nothing goes through, and alice's address is
        # refused before that.
        assert c.cmd(f"MAIL FROM:<{ALICE}>")[0] == 250
        assert c.cmd("RCPT TO:<dave@localhost>") == (
            553, [f"5.7.1 <{ALICE}>: Sender address rejected: not logged in"])
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<outsider@example.net>")[0] == 250
        assert c.cmd("RCPT TO:<dave@localhost>")[0] == 554
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("AUTH PLAIN " + plain_response(ALICE, ALICE_PW)) == (
            235, ["2.7.0 Authentication successful"])
        # A sender alice does not own is refused (smtpd_sender_login_maps).
        assert c.cmd(f"MAIL FROM:<{BOB}>")[0] == 250
        assert c.cmd("RCPT TO:<dave@localhost>") == (
            553, [f"5.7.1 <{BOB}>: Sender address rejected: not owned by user {ALICE}"])
        assert c.cmd("RSET")[0] == 250
        assert c.cmd(f"MAIL FROM:<{ALICE}>")[0] == 250
        assert c.cmd("RCPT TO:<dave@localhost>") == (250, ["2.1.5 Ok"])
        assert c.cmd("DATA")[0] == 354
        c.send(crlf(simple_message(subject="through dovecot")) + b".\r\n")
        code, texts = c.read_reply()
        assert code == 250, texts
        qid = QUEUED_RE.match(texts[0])["id"]
    data = inst.wait_delivered("dave")[0].read_bytes()
    head = data.split(b"\n\n")[0].decode()
    assert f"\t(Authenticated sender: {ALICE})\n\tby " in head, head
    assert f" with ESMTPSA id {qid}" in head, head
    assert inst.find_log(rf"^{qid}: client=unknown\[127\.0\.0\.2\], sasl_method=PLAIN, "
                         rf"sasl_username={re.escape(ALICE)}$", program="smtpd")
    assert inst.find_log(rf"Sender address rejected: not owned by user {re.escape(ALICE)}; "
                         rf"from=<{re.escape(BOB)}>", program="smtpd")
    # LOGIN, a wrong password: Postfix's reply and log line.
    with tls_session(sub) as c:
        assert c.cmd("AUTH LOGIN") == (334, ["VXNlcm5hbWU6"])
        assert c.cmd(b64(BOB)) == (334, ["UGFzc3dvcmQ6"])
        t = time.monotonic()
        assert c.cmd(b64("wrong")) == (
            535, ["5.7.8 Error: authentication failed: (reason unavailable)"])
        assert time.monotonic() - t >= 1.0
        assert c.cmd("AUTH LOGIN " + b64(BOB)) == (334, ["UGFzc3dvcmQ6"])
        assert c.cmd(b64(BOB_PW)) == (235, ["2.7.0 Authentication successful"])
    inst.wait_log(r"^warning: unknown\[127\.0\.0\.1\]: SASL LOGIN authentication failed: "
                  rf"\(reason unavailable\), sasl_username={re.escape(BOB)}$", program="smtpd")


def cram_md5_response(challenge_b64, user, password):
    challenge = base64.b64decode(challenge_b64)
    digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
    return b64(f"{user} {digest}")


def test_cram_md5_passes_through_and_security_options_filter(make_instance, dovecot):
    inst, sub = dovecot_instance(
        make_instance, dovecot,
        extra_master=["-o smtpd_sasl_tls_security_options=noanonymous,noplaintext"])
    with tls_session(sub) as c:
        assert "AUTH CRAM-MD5" in c.ehlo, c.ehlo
        assert c.cmd("AUTH PLAIN " + plain_response(ALICE, ALICE_PW)) == (
            535, ["5.7.8 Error: authentication failed: Invalid authentication mechanism"])
        code, texts = c.cmd("AUTH CRAM-MD5")
        assert code == 334, texts
        assert c.cmd(cram_md5_response(texts[0], ALICE, ALICE_PW)) == (
            235, ["2.7.0 Authentication successful"])
    assert inst.wait_log(r"SASL PLAIN authentication failed: Invalid authentication "
                         r"mechanism, sasl_username=\(unavailable\)$", program="smtpd")


def test_dovecot_stopped_and_back(make_instance, dovecot):
    inst, sub = dovecot_instance(make_instance, dovecot)
    with tls_session(sub) as c:
        assert c.cmd("AUTH PLAIN " + plain_response(ALICE, ALICE_PW))[0] == 235
    dovecot.stop()
    try:
        with tls_session(sub) as c:
            # The mechanisms are remembered; AUTH itself is a temporary error.
            assert "AUTH PLAIN LOGIN CRAM-MD5" in c.ehlo, c.ehlo
            t = time.monotonic()
            assert c.cmd("AUTH PLAIN " + plain_response(ALICE, ALICE_PW)) == (
                454, ["4.7.0 Temporary authentication failure: "
                      "Connection lost to authentication server"])
            assert time.monotonic() - t < 5
            # The session goes on, and so does everybody else's.
            assert c.cmd("NOOP")[0] == 250
            inst.send(simple_message(subject="while dovecot is down"), rcpts=["erin@localhost"])
            inst.wait_delivered("erin")
    finally:
        dovecot.start()
    with tls_session(sub) as c:
        assert c.cmd("AUTH PLAIN " + plain_response(ALICE, ALICE_PW)) == (
            235, ["2.7.0 Authentication successful"])
    inst.wait_log(r"^warning: unknown\[127\.0\.0\.1\]: SASL PLAIN authentication failed: "
                  r"Connection lost to authentication server, sasl_username=\(unavailable\)$",
                  program="smtpd")
    assert inst.find_log(r"^warning: SASL: Connect to Dovecot auth socket "
                         r"'private/dovecot-auth' failed: ", program="smtpd")
