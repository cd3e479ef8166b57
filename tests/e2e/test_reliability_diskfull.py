"""Full file systems (docs/DESIGN.md, "Durability"): with the queue on a small
tmpfs, a message is refused with "452 4.3.1 Insufficient system storage"
instead of a 250 (at MAIL FROM when nothing is left, at the end of DATA
when the message does not fit), nothing half-written is left in the queue
or scheduled, and mail flows again once space is freed. queue_minfree is
honoured at MAIL FROM (and a reload that lowers it lets mail in again), as
is a SIZE= estimate the free space cannot hold 1.5 times. With the mailbox
file system full, delivery defers, nothing truncated is left in the
Maildir, and the message arrives whole once space is freed. The tmpfs
tests need root to mount a tmpfs and skip cleanly without it.
"""

import hashlib
import os
import re
import time

import pytest

from postern_instance import (BUILD, HELO, SENDER, RawSMTP, clean_env, crlf, run_logged,
                              simple_message, wait_until)
from reliability_common import FAST_RETRY, queue_state
from reliability_tmpfs import fill, free_bytes, mount_tmpfs, umount

TEST_ID_RE = re.compile(rb"^X-Test-Id: (\S+)$", re.M)


@pytest.fixture
def tmpfs_instance(make_instance):
    """make(mount_on) -> a started instance whose queue or mail directory
    ("queue" / "mail") is a 2 MB tmpfs, unmounted at the end whatever
    happens (after the instance's processes are gone)."""
    mounted = []

    def make(mount_on, extra_main=()):
        instance = make_instance(extra_main=FAST_RETRY + list(extra_main), start=False)
        path = getattr(instance, mount_on)
        mount_tmpfs(path, "2m")
        mounted.append((instance, path))
        instance.start()
        return instance

    yield make
    for instance, path in mounted:
        instance.kill_everything()
        umount(path)


STORAGE = (452, "4.3.1 Insufficient system storage")
MINFREE_RE = r"^NOQUEUE: reject: MAIL from \S+: 452 4\.3\.1 Insufficient system storage; "


def transaction(port, message, rcpt="alice@localhost", mail_params=""):
    """One SMTP transaction; returns (stage, code, text) of the first reply
    that was not a success, or ("DATA", 250, text) when it was queued."""
    with RawSMTP(port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        for stage, line in (("MAIL", f"MAIL FROM:<{SENDER}>{mail_params}"),
                            ("RCPT", f"RCPT TO:<{rcpt}>")):
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


def assert_nothing_left(instance):
    """Nothing half-written is left in the queue, and nothing is scheduled."""
    time.sleep(1.5)
    state = queue_state(instance)
    assert state["incoming"] == [] and state["active"] == [] and state["deferred"] == [], state
    assert not instance.find_log(r"from=<.*>, size=.*\(queue active\)$", program="qmgr")[1:]


def test_queue_full_refused_then_flows(tmpfs_instance):
    instance = tmpfs_instance("queue")
    instance.send(simple_message(subject="warm-up", test_id="warm-up"))
    instance.wait_delivered("alice", 1)
    instance.wait_queue_empty(10)
    big = simple_message(subject="no room", test_id="no-room", body="y" * 200000 + "\n")

    # Not a byte left: refused at MAIL FROM, before any data is sent
    # (RFC 5321 452, Postfix's "452 4.3.1 Insufficient system storage").
    filler = fill(instance.queue)
    assert free_bytes(instance.queue) == 0
    stage, code, text = transaction(instance.port, big)
    assert (stage, code, text) == ("MAIL", *STORAGE)
    instance.wait_log(MINFREE_RE, program="smtpd", timeout=10)
    os.unlink(filler)

    # Some room, but not enough for this message: cleanup runs out of space
    # while writing it, and the end of DATA gets the same 452.
    filler = fill(instance.queue, leave=64 * 1024)
    stage, code, text = transaction(instance.port, big)
    assert (stage, code, text) == ("DATA", *STORAGE)
    instance.wait_log(r"queue file (write|commit|create) error: No space left on device",
                      program="cleanup", timeout=10)
    assert_nothing_left(instance)

    # Space comes back: the same message is accepted and arrives whole.
    os.unlink(filler)
    stage, code, text = transaction(instance.port, big)
    assert (stage, code) == ("DATA", 250), (stage, code, text)
    files = instance.wait_delivered("alice", 2, timeout=30)
    ids = sorted(TEST_ID_RE.search(f.read_bytes())[1] for f in files)
    assert ids == [b"no-room", b"warm-up"], ids
    instance.wait_queue_empty(10)


def test_queue_minfree_then_reload(tmpfs_instance):
    """queue_minfree larger than the whole 2 MB queue file system: every
    MAIL FROM gets 452 4.3.1, logged as a reject; after postconf -e
    queue_minfree = 0 and a reload, mail flows."""
    instance = tmpfs_instance("queue", extra_main=["queue_minfree = 10485760"])
    for _ in range(2):   # a refusal leaves the session usable
        stage, code, text = transaction(instance.port, simple_message(subject="minfree"))
        assert (stage, code, text) == ("MAIL", *STORAGE)
    assert len(instance.find_log(MINFREE_RE, program="smtpd")) == 2
    assert_nothing_left(instance)

    rc, out = run_logged([str(BUILD / "bin" / "postconf"), "-c", str(instance.etc), "-e",
                          "queue_minfree = 0"], 15, env=clean_env())
    assert rc == 0, out
    rc, out = instance.postern("reload")
    assert rc == 0, out
    # Old smtpd processes finish their sessions and exit; new ones read
    # the new main.cf.
    wait_until(lambda: transaction(instance.port, simple_message(
        subject="after reload", test_id="after-reload"))[1] == 250, 15, interval=0.3,
        what="MAIL FROM accepted after queue_minfree = 0 and reload")
    files = instance.wait_delivered("alice", 1)
    assert TEST_ID_RE.search(files[0].read_bytes())[1] == b"after-reload"


def test_size_estimate_must_fit(make_instance):
    """A SIZE= larger than (free space - queue_minfree) / 1.5 of the queue
    file system gets 452 4.3.1 at MAIL FROM (message_size_limit = 0: no
    552 first); one that fits is accepted. Needs no tmpfs."""
    instance = make_instance(extra_main=["message_size_limit = 0"])
    free = free_bytes(instance.queue)
    too_big = free * 2 // 3 + 10 * 1024 * 1024   # beyond the limit, whatever else writes
    stage, code, text = transaction(instance.port, simple_message(subject="too big"),
                                    mail_params=f" SIZE={too_big}")
    assert (stage, code, text) == ("MAIL", *STORAGE)
    instance.wait_log(MINFREE_RE, program="smtpd", timeout=10)
    stage, code, text = transaction(instance.port, simple_message(
        subject="fits", test_id="fits"), mail_params=" SIZE=1000")
    assert (stage, code) == ("DATA", 250), (stage, code, text)
    files = instance.wait_delivered("alice", 1)
    assert TEST_ID_RE.search(files[0].read_bytes())[1] == b"fits"


def test_queue_minfree_on_normal_disk(make_instance):
    """queue_minfree beyond any disk: 452 4.3.1 at MAIL FROM, also for the
    null sender. Needs no tmpfs."""
    instance = make_instance(extra_main=[f"queue_minfree = {2 ** 62}"])
    with RawSMTP(instance.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        for sender in (SENDER, ""):
            code, text = c.cmd(f"MAIL FROM:<{sender}>")
            assert (code, text[-1]) == STORAGE
        # The transaction was reset: RCPT needs a MAIL first.
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 503
        c.cmd("QUIT")
    assert len(instance.find_log(MINFREE_RE, program="smtpd")) == 2


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
