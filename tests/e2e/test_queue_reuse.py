"""Queue-file inode reuse (issue 9): qmgr hands the file of a delivered
message back into a reuse/ slot instead of unlinking it, and cleanup
overwrites that inode for the next message. The next message must come out
byte for byte as sent (nothing of the longer message before it), carry the
reused inode in its queue id, and the slot must hold the truncated file
again afterwards; with queue_reuse_slots = 0 nothing is pooled, and a claim
left by a dead cleanup is removed at start.
"""

import os

from postern_instance import simple_message, wait_until
from queue_fixture import DIGITS62


def inode_of(qid):
    """The inode part of a queue id (after 6 time and 4 microsecond digits)."""
    n = 0
    for c in qid[10:]:
        n = n * 62 + DIGITS62.index(c)
    return n


def pooled(inst):
    d = inst.queue / "reuse"
    return sorted(os.listdir(d)) if d.is_dir() else []


def test_delivered_file_is_reused_and_truncated(make_instance):
    inst = make_instance(extra_main=["queue_reuse_slots = 1"])
    big = simple_message(subject="the long one", body="x" * 70 + "\n" * 1 + ("y" * 99 + "\n") * 600)
    first = inst.send(big)
    inst.wait_delivered("alice", 1, timeout=20)
    inst.wait_queue_empty(10)
    wait_until(lambda: pooled(inst) == ["0"], 10, what="the file in reuse/0")
    slot = inst.queue / "reuse" / "0"
    assert slot.stat().st_ino == inode_of(first)
    big_size = slot.stat().st_size
    assert big_size > 60000

    small = simple_message(subject="the short one", body="short\n")
    second = inst.send(small)
    assert inode_of(second) == inode_of(first) and second != first
    files = inst.wait_delivered("alice", 2, timeout=20)
    got = [f.read_bytes() for f in files]
    short = [g for g in got if b"Subject: the short one\n" in g]
    assert len(short) == 1, got
    assert short[0].endswith(b"\n\nshort\n"), short[0][-200:]
    assert b"yyyy" not in short[0]
    inst.wait_queue_empty(10)
    wait_until(lambda: pooled(inst) == ["0"], 10, what="the file back in reuse/0")
    assert slot.stat().st_ino == inode_of(first)
    assert slot.stat().st_size < 4096 < big_size    # truncated to the short message


def test_no_slots_no_pool(make_instance):
    inst = make_instance(extra_main=["queue_reuse_slots = 0"])
    ids = [inst.send(simple_message(subject=f"unpooled {i}")) for i in range(3)]
    inst.wait_delivered("alice", 3, timeout=20)
    inst.wait_queue_empty(10)
    for qid in ids:
        inst.wait_log(rf"^{qid}: removed$")
    assert pooled(inst) == []


def test_claim_left_by_a_dead_cleanup_is_purged_at_start(make_instance):
    inst = make_instance(start=False)
    (inst.queue / "reuse").mkdir(parents=True, exist_ok=True)
    dead = inst.queue / "reuse" / "tmp.999999999.0"
    dead.write_bytes(b"half a message")
    kept = inst.queue / "reuse" / "3"
    kept.write_bytes(b"a pooled file")
    inst.start()
    inst.wait_log(r"^reuse/tmp\.999999999\.0: removed temporary file$")
    assert not dead.exists() and kept.exists()
    qid = inst.send(simple_message(subject="after the purge"))
    files = inst.wait_delivered("alice", 1, timeout=20)
    assert b"Subject: after the purge\n" in files[0].read_bytes()
    inst.wait_log(rf"^{qid}: removed$")
