"""smtpd AUTH: PLAIN and LOGIN over TLS against smtpd_sasl_password_maps
(crypt SHA-512 hashes), with swaks and raw sessions: right and wrong
passwords, the failed-attempt delay (a timer: other clients are served
meanwhile) and the per-session failure limit, AUTH refused in plaintext
when smtpd_tls_auth_only = yes, the user logged and recorded in the queue
file, relaying for authenticated clients, reject_sender_login_mismatch."""

import re
import subprocess
import threading
import time

from postern_instance import HELO, SENDER, QUEUED_RE, crlf, simple_message, wait_until
from queue_fixture import parse_records
from smtpd_fixture import (TLSRaw, make_cert, master_cf, plain_response, sasl_lines, tls_lines)

USERS = {"alice": "right-pass", "bob": "bob-pass"}
OUTSIDE = ("127.0.0.2", 0)
FAILED = (535, ["5.7.8 Error: authentication failed: authentication failure"])


def start_auth_instance(make_instance, extra=(), qmgr=True):
    inst = make_instance(start=False)
    inst.write_master_cf(master_cf(inst.port, qmgr=qmgr))
    cert, key = make_cert(inst.root)
    inst.write_main_cf(tls_lines(cert, key) + sasl_lines(USERS) + list(extra))
    inst.start()
    return inst


def tls_session(inst, source=None):
    c = TLSRaw(inst.port, source=source)
    assert c.read_reply()[0] == 220
    assert c.cmd(f"EHLO {HELO}")[0] == 250
    assert c.cmd("STARTTLS")[0] == 220
    c.starttls()
    code, ehlo = c.cmd(f"EHLO {HELO}")
    assert code == 250 and "AUTH PLAIN LOGIN" in ehlo, ehlo
    return c


def swaks(inst, *args):
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{inst.port}", "--helo", HELO,
                        "--from", SENDER, *args], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode() + r.stderr.decode()


def test_swaks_tls_auth_plain_right_and_wrong_password(make_instance):
    inst = start_auth_instance(make_instance)
    rc, out = swaks(inst, "--to", "dave@localhost", "--tls", "--auth", "PLAIN",
                    "--auth-user", "alice", "--auth-password", "right-pass",
                    "--local-interface", "127.0.0.2")
    assert rc == 0, out
    assert "<~  235 2.7.0 Authentication successful" in out, out
    qid = re.search(r"<~  250 2\.0\.0 Ok: queued as (\w+)", out)[1]
    data = inst.wait_delivered("dave")[0].read_bytes()
    assert f" with ESMTPSA id {qid}".encode() in data.split(b"\n\n")[0]
    assert inst.find_log(rf"^{qid}: client=unknown\[127\.0\.0\.2\], sasl_method=PLAIN, "
                         r"sasl_username=alice$", program="smtpd")

    t = time.monotonic()
    rc, out = swaks(inst, "--to", "dave@localhost", "--tls", "--auth", "PLAIN",
                    "--auth-user", "alice", "--auth-password", "wrong-pass")
    took = time.monotonic() - t
    assert rc != 0, out
    assert "<~* 535 5.7.8 Error: authentication failed: authentication failure" in out, out
    assert took >= 1.0, took           # smtpd_error_sleep_time
    # Postfix 3.7's line: the reason, then the user name the client gave.
    inst.wait_log(r"^warning: unknown\[127\.0\.0\.1\]: SASL PLAIN authentication failed: "
                  r"authentication failure, sasl_username=alice$", program="smtpd")
    assert len(inst.delivered("dave")) == 1


def test_auth_login_and_queue_file_records_the_user(make_instance):
    inst = start_auth_instance(make_instance, qmgr=False)
    with tls_session(inst) as c:
        assert c.cmd("AUTH LOGIN") == (334, ["VXNlcm5hbWU6"])
        assert c.cmd("Ym9i") == (334, ["UGFzc3dvcmQ6"])            # bob
        assert c.cmd("Ym9iLXBhc3M=") == (235, ["2.7.0 Authentication successful"])
        assert c.cmd("AUTH PLAIN " + plain_response("bob", "bob-pass")) == (
            503, ["5.5.1 Error: already authenticated"])
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<erin@localhost>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(crlf(simple_message(subject="recorded")) + b".\r\n")
        code, texts = c.read_reply()
        assert code == 250, texts
        qid = QUEUED_RE.match(texts[0])["id"]
    path = wait_until(lambda: [p for p in inst.queue_files() if p.name == qid], 10,
                      what="the queue file")[0]
    attrs = [payload.decode() for rtype, payload, _ in parse_records(path.read_bytes())
             if rtype == "A"]
    assert "sasl_method=LOGIN" in attrs and "sasl_username=bob" in attrs, attrs
    assert "protocol=ESMTPSA" in attrs, attrs


def test_auth_refused_without_tls(make_instance):
    inst = start_auth_instance(make_instance)
    with TLSRaw(inst.port) as c:
        assert c.read_reply()[0] == 220
        code, ehlo = c.cmd(f"EHLO {HELO}")
        assert code == 250 and not any(k.startswith("AUTH") for k in ehlo), ehlo
        assert c.cmd("AUTH PLAIN " + plain_response("alice", "right-pass")) == (
            503, ["5.5.1 Error: authentication not enabled"])


def test_auth_in_plaintext_when_tls_auth_only_is_off(make_instance):
    inst = start_auth_instance(make_instance, extra=["smtpd_tls_auth_only = no"])
    with TLSRaw(inst.port) as c:
        assert c.read_reply()[0] == 220
        code, ehlo = c.cmd(f"EHLO {HELO}")
        assert "AUTH PLAIN LOGIN" in ehlo, ehlo
        assert c.cmd("AUTH PLAIN") == (334, [""])
        assert c.cmd(plain_response("alice", "right-pass")) == (
            235, ["2.7.0 Authentication successful"])


def test_failed_auth_delay_is_a_timer_and_the_limit_ends_the_session(make_instance):
    inst = start_auth_instance(make_instance, extra=["smtpd_error_sleep_time = 2s",
                                                     "smtpd_sasl_auth_failure_limit = 2"])
    with tls_session(inst) as c:
        result = {}

        def fail_once():
            t = time.monotonic()
            result["reply"] = c.cmd("AUTH PLAIN " + plain_response("alice", "guess"))
            result["took"] = time.monotonic() - t

        th = threading.Thread(target=fail_once)
        th.start()
        time.sleep(0.3)
        # Meanwhile another client is served at once.
        t = time.monotonic()
        with TLSRaw(inst.port) as other:
            assert other.read_reply()[0] == 220
            assert other.cmd(f"EHLO {HELO}")[0] == 250
        assert time.monotonic() - t < 1.0
        th.join(10)
        assert result["reply"] == FAILED
        assert result["took"] >= 1.9, result
        # The second failure is the last one.
        assert c.cmd("AUTH PLAIN " + plain_response("bob", "guess")) == FAILED
        assert c.read_reply() == (
            421, ["4.7.0 mx.test.example Error: too many failed authentication attempts"])
        with_close = c.sock.recv(1)
        assert with_close == b""
    inst.wait_log(r"^disconnect from unknown\[127\.0\.0\.1\] ehlo=2 starttls=1 auth=0/2 "
                  r"commands=3/5$", program="smtpd")


def test_authenticated_client_may_relay(make_instance):
    inst = start_auth_instance(make_instance, qmgr=False)
    with tls_session(inst, source=OUTSIDE) as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<bob@example.com>") == (
            554, ["5.7.1 <bob@example.com>: Relay access denied"])
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("AUTH PLAIN " + plain_response("alice", "right-pass"))[0] == 235
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<bob@example.com>") == (250, ["2.1.5 Ok"])


def test_reject_sender_login_mismatch(make_instance):
    inst = start_auth_instance(make_instance, extra=[
        "smtpd_sender_login_maps = inline:{ alice@example.org=alice, @corp.example=bob }",
        "smtpd_sender_restrictions = reject_sender_login_mismatch"])
    with tls_session(inst) as c:
        # Not logged in: a sender someone owns is refused, others are fine.
        assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<frank@localhost>") == (
            553, ["5.7.1 <alice@example.org>: Sender address rejected: not logged in"])
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<nobody@example.net>")[0] == 250
        assert c.cmd("RCPT TO:<frank@localhost>")[0] == 250
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("AUTH PLAIN " + plain_response("bob", "bob-pass"))[0] == 235
        assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<frank@localhost>") == (
            553, ["5.7.1 <alice@example.org>: Sender address rejected: not owned by user bob"])
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<boss@corp.example>")[0] == 250
        assert c.cmd("RCPT TO:<frank@localhost>") == (250, ["2.1.5 Ok"])
    line = inst.wait_log(r"not owned by user bob", program="smtpd")[0]
    assert line.text == (
        "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 553 5.7.1 <alice@example.org>: "
        "Sender address rejected: not owned by user bob; from=<alice@example.org> "
        f"to=<frank@localhost> proto=ESMTP helo=<{HELO}>")


def test_sender_login_mismatch_variants(make_instance):
    """reject_known_, reject_authenticated_ and
    reject_unauthenticated_sender_login_mismatch, as Postfix defines them."""
    login_maps = "smtpd_sender_login_maps = inline:{ alice@example.org=alice }"
    for restriction, unauth_owned, unauth_other, auth_unlisted in (
            ("reject_known_sender_login_mismatch", 553, 250, 250),
            ("reject_authenticated_sender_login_mismatch", 250, 250, 553),
            ("reject_unauthenticated_sender_login_mismatch", 553, 250, 250)):
        inst = start_auth_instance(make_instance, qmgr=False, extra=[
            login_maps, f"smtpd_sender_restrictions = {restriction}"])
        with tls_session(inst) as c:
            for sender, code in (("alice@example.org", unauth_owned),
                                 ("nobody@example.net", unauth_other)):
                assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
                assert c.cmd("RCPT TO:<frank@localhost>")[0] == code, (restriction, sender)
                assert c.cmd("RSET")[0] == 250
            assert c.cmd("AUTH PLAIN " + plain_response("bob", "bob-pass"))[0] == 235
            # bob owns nothing: alice's address is refused by all three
            # but the unauthenticated variant, an unlisted one by the
            # authenticated variant only.
            assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 250
            expect = 250 if restriction.startswith("reject_unauth") else 553
            assert c.cmd("RCPT TO:<frank@localhost>")[0] == expect, restriction
            assert c.cmd("RSET")[0] == 250
            assert c.cmd("MAIL FROM:<nobody@example.net>")[0] == 250
            assert c.cmd("RCPT TO:<frank@localhost>")[0] == auth_unlisted, restriction
        inst.stop()
