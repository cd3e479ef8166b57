"""Full file systems (DESIGN.md, "Durability"): with the queue on a small
tmpfs filled to the last byte, a message is refused with a temporary
"insufficient system storage" error instead of a 250, nothing half-written
is left in the queue or scheduled, and mail flows again once space is
freed. With the mailbox file system full, delivery defers, nothing
truncated is left in the Maildir, and the message arrives whole once space
is freed. Both need root to mount a tmpfs and skip cleanly without it.
"""

import hashlib
import os
import re
import time

import pytest

from postern_instance import HELO, SENDER, RawSMTP, crlf, simple_message, wait_until
from reliability_common import FAST_RETRY, queue_state
from reliability_tmpfs import fill, free_bytes, mount_tmpfs, umount

TEST_ID_RE = re.compile(rb"^X-Test-Id: (\S+)$", re.M)


@pytest.fixture
def tmpfs_instance(make_instance):
    """make(mount_on) -> a started instance whose queue or mail directory
    ("queue" / "mail") is a 2 MB tmpfs, unmounted at the end whatever
    happens (after the instance's processes are gone)."""
    mounted = []

    def make(mount_on):
        instance = make_instance(extra_main=FAST_RETRY, start=False)
        path = getattr(instance, mount_on)
        mount_tmpfs(path, "2m")
        mounted.append((instance, path))
        instance.start()
        return instance

    yield make
    for instance, path in mounted:
        instance.kill_everything()
        umount(path)


def transaction(port, message, rcpt="alice@localhost"):
    """One SMTP transaction; returns (stage, code, text) of the first reply
    that was not a success, or ("DATA", 250, text) when it was queued."""
    with RawSMTP(port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        for stage, line in (("MAIL", f"MAIL FROM:<{SENDER}>"), ("RCPT", f"RCPT TO:<{rcpt}>")):
            code, text = c.cmd(line)
            if code != 250:
                return stage, code, text[-1]
        code, text = c.cmd("DATA")
        if code != 354:
            return "DATA", code, text[-1]
        c.send(crlf(message) + b".\r\n")
        code, text = c.read_reply()
        c.cmd("QUIT")
        return "DATA", code, text[-1]


def test_queue_full_refused_then_flows(tmpfs_instance):
    instance = tmpfs_instance("queue")
    instance.send(simple_message(subject="warm-up", test_id="warm-up"))
    instance.wait_delivered("alice", 1)
    instance.wait_queue_empty(10)

    filler = fill(instance.queue)
    assert free_bytes(instance.queue) == 0
    big = simple_message(subject="no room", test_id="no-room", body="y" * 200000 + "\n")
    stage, code, text = transaction(instance.port, big)
    # RFC 5321 452 (Postfix: "452 4.3.1 Insufficient system storage"); 451
    # with the same enhanced code is a temporary failure too.
    assert code in (451, 452) and text == "4.3.1 Insufficient system storage", \
        (stage, code, text)
    instance.wait_log(r"queue file (write|commit|create) error: No space left on device",
                      program="cleanup", timeout=10)
    # Nothing half-written is left, and nothing gets scheduled.
    time.sleep(1.5)
    state = queue_state(instance)
    assert state["incoming"] == [] and state["active"] == [] and state["deferred"] == [], state
    assert not instance.find_log(r"from=<.*>, size=.*\(queue active\)$", program="qmgr")[1:]

    # Space comes back: the same message is accepted and arrives whole.
    os.unlink(filler)
    stage, code, text = transaction(instance.port, big)
    assert (stage, code) == ("DATA", 250), (stage, code, text)
    files = instance.wait_delivered("alice", 2, timeout=30)
    ids = sorted(TEST_ID_RE.search(f.read_bytes())[1] for f in files)
    assert ids == [b"no-room", b"warm-up"], ids
    instance.wait_queue_empty(10)


def body_digest(data):
    return hashlib.sha256(data.split(b"\n\n", 1)[1]).hexdigest()


def test_mailbox_full_defers_then_delivers(tmpfs_instance):
    instance = tmpfs_instance("mail")
    instance.send(simple_message(subject="warm-up", test_id="warm-up"))
    instance.wait_delivered("alice", 1)

    filler = fill(instance.mail)
    body = "".join(f"line {i:06d} of a message larger than the space left\n"
                   for i in range(5000))
    qid = instance.send(simple_message(subject="mailbox full", test_id="full", body=body))
    instance.wait_log(rf"^{qid}: to=<alice@localhost>, relay=local, .*dsn=4\.\d\.\d, "
                      rf"status=deferred \(.*No space left on device\)$",
                      program="local", timeout=20)
    # The message waits in the queue, and the Maildir holds nothing of it:
    # not in new/, and no partial file left behind in tmp/.
    time.sleep(1.0)
    state = queue_state(instance)
    assert [n for n, _ in state["deferred"] + state["active"]] == [qid], state
    assert len(instance.delivered("alice")) == 1
    assert os.listdir(instance.mail / "alice" / "tmp") == []
    assert not instance.find_log(rf"^{qid}: .*status=sent")

    os.unlink(filler)
    files = instance.wait_delivered("alice", 2, timeout=30)
    instance.wait_log(rf"^{qid}: removed$", program="qmgr", timeout=20)
    full = [f for f in files if b"X-Test-Id: full\n" in f.read_bytes()]
    assert len(full) == 1, files
    assert body_digest(full[0].read_bytes()) == hashlib.sha256(body.encode()).hexdigest()
    wait_until(lambda: os.listdir(instance.mail / "alice" / "tmp") == [], 5,
               what="Maildir tmp/ to be empty")
