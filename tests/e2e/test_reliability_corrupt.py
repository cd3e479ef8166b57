"""Corrupt input on disk (docs/DESIGN.md, "Queue"): while mail flows, files are
planted the way a crash, a bad disk or a confused administrator would
leave them. A truncated or garbled complete queue file (in incoming/ or in
deferred/) goes to corrupt/ with a log line naming it; an incomplete file
(no end record, mode 0600: cleanup still writing) is never scheduled; a
maildrop file that does not parse is moved aside to corrupt/. Meanwhile
every message sent normally is delivered exactly once. After a crash,
`postern start` removes the unfinished files (mode 0600, in incoming/ and
hold/) and cleanup's tmp.PID.N files before the daemons start, logging
each, while a complete file left in incoming/ is delivered.
"""

import collections
import os
import random
import time
from pathlib import Path

from postern_instance import simple_message, wait_until
from queue_fixture import build_queue_file, queue_id, rec
from reliability_common import (FAST_RETRY, TaggedLoad, delivered_tags, kill_instance_now,
                                queue_state)


def plant(queue_dir, queue, data, mode, arrival=None, mtime=None):
    """Write data as a queue file of queue under a proper queue id (made,
    as cleanup makes them, from the arrival time and the inode), fully
    written and with its final mode before it appears under its name.
    Returns the id."""
    arrival = time.time() if arrival is None else arrival
    tmp = Path(queue_dir) / f"plant.{os.getpid()}.{time.monotonic_ns()}"
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    sec = int(arrival)
    qid = queue_id(sec, int((arrival - sec) * 1e6), os.stat(tmp).st_ino)
    final = Path(queue_dir) / queue / (qid[-1] if queue == "deferred" else "") / qid
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp, final)
    return qid


def tagged_file(tag, rcpt="victim@localhost"):
    data, _ = build_queue_file("sender@example.org", [rcpt],
                               simple_message(subject=tag, test_id=tag), time.time())
    return data


def wake_pickup(instance):
    """What postdrop does after writing a file: a byte on public/pickup."""
    fd = os.open(instance.queue / "public" / "pickup", os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, b"W")
    finally:
        os.close(fd)


def test_corrupt_files_set_aside_while_mail_flows(make_instance):
    instance = make_instance(extra_main=FAST_RETRY)
    rng = random.Random(7)
    load = TaggedLoad(instance.port, total=200, conns=4, prefix="flow", deadline=40).start()

    # Complete (mode 0700) but cut short: no end record.
    full = tagged_file("planted-truncated")
    truncated = plant(instance.queue, "incoming", full[:len(full) * 2 // 3], 0o700)
    # Complete mode, but the bytes are noise.
    garbled = plant(instance.queue, "incoming", bytes(rng.randrange(256) for _ in range(3000)),
                    0o700)
    # Cut in the middle of a record header (a length byte that says "more").
    cut_header = plant(instance.queue, "incoming", full[:40] + b"R\x85", 0o700)
    # Garbled and due in deferred/: found by a queue run, not a wake-up.
    garbled_deferred = plant(instance.queue, "deferred",
                             rec("Z", "garbage") + bytes(rng.randrange(256) for _ in range(500)),
                             0o700, mtime=time.time() - 60)
    # Still being written (mode 0600, no end record): must never be touched.
    incomplete = plant(instance.queue, "incoming", tagged_file("planted-incomplete")[:-2],
                       0o600)
    # A maildrop file that is not records at all.
    bad_drop = plant(instance.queue, "maildrop", b"From: nobody\n\nthis is not a record file\n",
                     0o644)
    wake_pickup(instance)

    for qid in (truncated, garbled, cut_header, garbled_deferred):
        instance.wait_log(rf"^warning: {qid}: .*corrupt", program="qmgr", timeout=20)
    instance.wait_log(rf"^warning: maildrop/{bad_drop}: .*moved to corrupt/{bad_drop}$",
                      program="pickup", timeout=20)
    load.join(60)
    assert len(load.acked) == 200, (len(load.acked), load.failures)

    seen = wait_until(lambda: (lambda s: s if all(s[t] for t in load.acked) else None)(
        delivered_tags(instance.mail)[0]), 60, what="every acknowledged message delivered")
    time.sleep(1.5)   # a queue run or two more: nothing may show up twice
    seen, untagged = delivered_tags(instance.mail)
    assert untagged == 0
    assert seen == collections.Counter({t: 1 for t in load.acked}), \
        {t: n for t, n in seen.items() if n != 1 or t not in load.acked}

    state = queue_state(instance)
    corrupt = sorted(n for n, _ in state["corrupt"])
    assert corrupt == sorted([truncated, garbled, cut_header, garbled_deferred, bad_drop]), state
    # The incomplete file stays where it is, untouched and never scheduled.
    assert state["incoming"] == [(incomplete, "0o600")], state
    assert state["active"] == [] and state["deferred"] == [], state
    assert not instance.find_log(rf"\b{incomplete}\b"), instance.find_log(rf"\b{incomplete}\b")
    assert "planted-truncated" not in seen and "planted-incomplete" not in seen
    assert not instance.delivered("victim")


def test_start_purges_unfinished_files(make_instance):
    instance = make_instance(extra_main=FAST_RETRY)
    instance.send(simple_message(subject="warm-up", test_id="warm-up"))
    instance.wait_delivered("alice", 1)
    kill_instance_now(instance)   # a crash: whatever cleanup was writing stays

    # A fresh one too: with master down no cleanup is writing it.
    unfinished = [plant(instance.queue, "incoming", tagged_file("planted-unfinished")[:-2],
                        0o600, mtime=time.time() - 3600),
                  plant(instance.queue, "incoming", tagged_file("planted-fresh")[:-2], 0o600)]
    held = plant(instance.queue, "hold", tagged_file("planted-held")[:-2], 0o600)
    temp = instance.queue / "incoming" / f"tmp.{os.getpid()}.0"
    temp.write_bytes(b"Z")
    complete = plant(instance.queue, "incoming", tagged_file("planted-complete"), 0o700)

    instance.start()
    # Gone before master started: nothing of them may ever be scheduled.
    state = queue_state(instance)
    left = {n for q in ("incoming", "hold") for n, _ in state[q]}
    assert not left & {*unfinished, held, temp.name}, state
    for queue, name in [("incoming", q) for q in unfinished] + [("hold", held),
                                                                 ("incoming", temp.name)]:
        assert instance.find_log(rf"^{queue}/{name}: removed temporary file$",
                                 program="postern-script"), (queue, name)
    assert instance.find_log(r"^Deleted: 4 temporary files$", program="postern-script")

    [f] = instance.wait_delivered("victim", 1, timeout=30)
    assert b"X-Test-Id: planted-complete\n" in f.read_bytes()
    instance.wait_log(rf"^{complete}: removed$", program="qmgr", timeout=20)
    for qid in unfinished + [held]:
        assert not instance.find_log(rf"\b{qid}\b", program="qmgr"), qid
    delivered = {t for t in delivered_tags(instance.mail)[0]}
    assert delivered == {"warm-up", "planted-complete"}, delivered


def test_directory_named_as_a_queue_file_is_set_aside(make_instance):
    """After a power cut, fsck may leave a directory (a Maildir's, its
    inode reused) under a queue file's name in active/ (tests/powercut
    found one): qmgr moves it to corrupt/ and mail flows, no human needed."""
    instance = make_instance(extra_main=FAST_RETRY, start=False)
    sec = int(time.time())
    qid = queue_id(sec, 1234, 987654)
    odd = instance.queue / "active" / qid
    odd.mkdir(parents=True)
    (odd / "1796656600.M37606P24811_3.mx.test.example").write_text("x\n")
    instance.start()
    instance.wait_log(rf"^warning: {qid}: not a regular file; moving to corrupt/$", program="qmgr")
    assert (instance.queue / "corrupt" / qid).is_dir()
    assert not odd.exists()
    instance.send(simple_message(subject="after"), ["alice@localhost"])
    instance.wait_delivered("alice")
