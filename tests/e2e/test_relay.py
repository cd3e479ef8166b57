"""Relay control: with mynetworks = 127.0.0.1/32, a client from 127.0.0.2 may
not relay to example.com (554 5.7.1, nothing queued, a NOQUEUE reject line
logged) but may still mail local users; a client from 127.0.0.1 may relay."""

import re
import time

from postern_instance import HELO, SENDER, crlf, simple_message, send_in_session

OUTSIDE = ("127.0.0.2", 0)
DENIED = b"5.7.1 <bob@example.com>: Relay access denied"


def test_relay_denied_from_outside_mynetworks(instance):
    with instance.smtp(source=OUTSIDE) as s:
        assert s.ehlo(HELO)[0] == 250
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        assert s.rcpt("bob@example.com") == (554, DENIED)
        s.rset()
    time.sleep(0.5)
    assert instance.queue_files() == []

    line = instance.wait_log(r"^NOQUEUE: reject: ", program="smtpd", timeout=5)[0]
    assert line.text == (
        "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 <bob@example.com>: "
        f"Relay access denied; from=<{SENDER}> to=<bob@example.com> proto=ESMTP helo=<{HELO}>")


def test_outside_client_may_still_send_to_local_users(instance):
    with instance.smtp(source=OUTSIDE) as s:
        assert s.ehlo(HELO)[0] == 250
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        assert s.rcpt("bob@example.com") == (554, DENIED)
        # The same transaction goes on with a local recipient.
        assert s.rcpt("alice@localhost") == (250, b"2.1.5 Ok")
        code, resp = s.data(crlf(simple_message(subject="from outside")))
        assert code == 250, resp
        qid = re.match(rb"2\.0\.0 Ok: queued as (\w+)$", resp)[1].decode()
    data = instance.wait_delivered("alice", 1)[0].read_bytes()
    assert b"(unknown [127.0.0.2])" in data.split(b"\n\n")[0]
    instance.wait_log(rf"^{qid}: removed$", program="qmgr")
    # Only alice: the message was never meant for bob.
    assert instance.find_log(rf"^{qid}: from=<{re.escape(SENDER)}>, size=\d+, nrcpt=1 ")
    assert not (instance.mail / "bob").exists()


def test_relay_allowed_from_mynetworks(instance):
    with instance.smtp() as s:
        assert s.ehlo(HELO)[0] == 250
        qid = send_in_session(s, simple_message(subject="relay"), ["bob@example.com"])
    # No remote delivery yet: it is queued (and deferred later); that is all
    # this test may assert.
    assert qid
    assert not instance.find_log(r"NOQUEUE: reject: .*bob@example\.com")
    assert instance.find_log(rf"^{qid}: client=unknown\[127\.0\.0\.1\]$", program="smtpd")
