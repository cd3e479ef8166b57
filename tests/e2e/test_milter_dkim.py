"""The real OpenDKIM (opendkim -f -x CONF, Mode sv, its own configuration
file, a key made by opendkim-genkey for a test domain, on a free port of
127.0.0.1) as a milter of Postern: it signs mail submitted on a submission
service (-o smtpd_milters=... -o milter_macro_daemon_name=ORIGINATING) and
mail from sendmail (non_smtpd_milters), and python3-dkim verifies the
delivered messages with the test key. OpenDKIM is told to sign only what
comes from the daemon named ORIGINATING (its MTA setting; no internal
hosts), so the port 25 service, with the same milter but the default
daemon name, gets no signature: the {daemon_name} macro decides.
"""

import dkim
import pytest

from milter_peers import OpenDKIM
from postern_instance import Instance, RawSMTP, crlf, free_port
from sendmail_helpers import run_sendmail
from test_milter import queued_id

SIGNER = f"user@{OpenDKIM.DOMAIN}"


@pytest.fixture(scope="module")
def opendkim():
    d = OpenDKIM(extra_conf=["MTA ORIGINATING", "InternalHosts 192.0.2.254"])
    yield d
    print(d.log_text()[-4000:])
    d.close()


@pytest.fixture(scope="module")
def inst(opendkim):
    port, submission = free_port(), free_port()
    i = Instance(port, extra_main=[f"non_smtpd_milters = {opendkim.spec}"])
    i.submission = submission
    i.write_master_cf(
        f"127.0.0.1:{port} inet n - n - - smtpd -o smtpd_milters={opendkim.spec}\n"
        f"127.0.0.1:{submission} inet n - n - - smtpd -o smtpd_milters={opendkim.spec}"
        " -o milter_macro_daemon_name=ORIGINATING\n"
        # local submissions: cleanup's own daemon name
        "cleanup unix - - n - 0 cleanup -o milter_macro_daemon_name=ORIGINATING\n"
        "qmgr fifo n - n 300 1 qmgr\n"
        "pickup fifo n - n 60 1 pickup\n"
        "local unix - n n - - local\n"
        "bounce unix - - n - 0 bounce\n")
    i.start()
    yield i
    print(i.log_tail(80))
    i.cleanup()


def message(subject, body="A body that the signature covers.\nSecond line.\n"):
    return (f"From: Test Sender <{SIGNER}>\nTo: alice@localhost\nSubject: {subject}\n"
            f"Date: Mon, 07 Dec 2026 10:00:00 +0000\n\n{body}")


def submit(port, msg, rcpt):
    c = RawSMTP(port)
    assert c.read_reply()[0] == 220
    assert c.cmd("EHLO client.example")[0] == 250
    assert c.cmd(f"MAIL FROM:<{SIGNER}>")[0] == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(crlf(msg) + b".\r\n")
    reply = c.read_reply()
    c.cmd("QUIT")
    c.close()
    return queued_id(reply)


def verify(opendkim, data):
    """dkim.verify on the delivered message (CR LF, as it travels)."""
    return dkim.verify(data.replace(b"\n", b"\r\n"), dnsfunc=opendkim.dnsfunc)


def test_submission_service_mail_is_signed_and_verifies(inst, opendkim):
    qid = submit(inst.submission, message("signed on submission"), "alice@localhost")
    data = inst.wait_delivered("alice")[-1].read_bytes()
    assert qid.encode() in data
    head = data.split(b"\n\n", 1)[0]
    assert b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=dkim.test.example;" in head
    # The signature goes on top, as with Postfix: before our Received:.
    assert head.index(b"DKIM-Signature:") < head.index(b"Received:")
    assert verify(opendkim, data)
    # Changed in transit, it no longer verifies: the check is real.
    assert not verify(opendkim, data.replace(b"Second line.", b"Second line!"))


def test_sendmail_mail_is_signed_through_non_smtpd_milters(inst, opendkim):
    r = run_sendmail(inst, ["-f", SIGNER, "bob@localhost"], message("signed from sendmail"))
    assert r.returncode == 0, r.stderr
    data = inst.wait_delivered("bob")[-1].read_bytes()
    assert b"DKIM-Signature:" in data and b"Subject: signed from sendmail" in data
    assert verify(opendkim, data)


def test_port_25_mail_is_verified_not_signed(inst, opendkim):
    submit(inst.port, message("inbound"), "carol@localhost")
    data = inst.wait_delivered("carol")[-1].read_bytes()
    assert b"DKIM-Signature:" not in data
    # A signed message arriving there is verified by OpenDKIM (with the
    # test key) and not signed again.
    signed = submit_signed_copy(inst, opendkim)
    submit(inst.port, signed, "erin@localhost")
    data = inst.wait_delivered("erin")[-1].read_bytes()
    head = data.split(b"\n\n", 1)[0]
    assert head.count(b"DKIM-Signature:") == 1
    assert b"Authentication-Results: verifier.test.example;\n\tdkim=pass" in head, head


def submit_signed_copy(inst, opendkim):
    """A message signed on the submission service, as it was delivered,
    without the delivery's own headers."""
    submit(inst.submission, message("to be forwarded"), "frank@localhost")
    data = inst.wait_delivered("frank")[-1].read_bytes()
    lines = data.split(b"\n")
    while lines[0].startswith((b"Return-Path:", b"Delivered-To:")):
        lines.pop(0)
    return b"\n".join(lines).decode()


def test_large_message_signs_and_verifies(inst, opendkim):
    body = "".join(f"{i:06d} a line of a large signed body\n" for i in range(60000))   # ~2 MB
    submit(inst.submission, message("large", body), "dave@localhost")
    data = inst.wait_delivered("dave")[-1].read_bytes()
    assert b"DKIM-Signature:" in data
    assert verify(opendkim, data)
