"""postsuper: -h, -H, -r and -d (by id, ALL, "-" from stdin, limited to a
queue), each checked with the next `postqueue -p`/-j and in the mail log;
-s repairing a misnamed, a misplaced and a truncated queue file; -p
removing only abandoned temporary files; and deleting mail while qmgr is
delivering it.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from postern_instance import BUILD, SENDER, simple_message, wait_until
from queue_fixture import base62, make_queue_file, queue_path, read_log, write_log
from test_postqueue import QUEUES, postqueue

POSTSUPER = BUILD / "bin" / "postsuper"


def postsuper(inst, *args, stdin=b"", timeout=30):
    env = dict(os.environ)
    env.pop("MAIL_CONFIG", None)
    p = subprocess.run([str(POSTSUPER), "-c", str(inst.etc), *args], input=stdin,
                       capture_output=True, env=env, timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode("utf-8", "replace")


def listing(inst):
    """{queue_id: queue_name} from postqueue -j."""
    rc, out, err = postqueue(inst, "-j")
    assert (rc, err) == (0, "")
    return {o["queue_id"]: o["queue_name"] for o in map(json.loads, out.splitlines())}


def deferred(inst, rcpt="alice@localhost", subject="m"):
    """A deferred message whose next attempt is an hour away."""
    qid, _ = make_queue_file(inst.queue, "deferred", SENDER, [rcpt],
                             simple_message(subject, test_id=subject), mtime=time.time() + 3600)
    return qid


@pytest.fixture
def stopped(make_instance):
    """An instance that is configured but not running, with empty queues."""
    inst = make_instance(start=False)
    for d in QUEUES:
        (inst.queue / d).mkdir(exist_ok=True)
    return inst


def test_hold_release_requeue(make_instance):
    inst = make_instance()
    a, b, c = (deferred(inst, subject=s) for s in ("a", "b", "c"))
    assert listing(inst) == {a: "deferred", b: "deferred", c: "deferred"}

    rc, _, err = postsuper(inst, "-h", a)
    assert rc == 0 and err == f"postsuper: {a}: placed on hold\npostsuper: Placed on hold: 1 message\n"
    assert listing(inst) == {a: "hold", b: "deferred", c: "deferred"}
    rc, out, _ = postqueue(inst, "-p")
    assert f"\n{a}!" in out
    time.sleep(0.5)
    assert inst.delivered("alice") == []   # hold/ is never scheduled

    rc, _, err = postsuper(inst, "-H", a)
    assert rc == 0 and err.endswith("postsuper: Released from hold: 1 message\n")
    assert listing(inst) == {a: "deferred", b: "deferred", c: "deferred"}
    assert os.stat(queue_path(inst.queue, "deferred", a)).st_mtime <= time.time()  # due now

    rc, _, err = postsuper(inst, "-r", "ALL")
    assert rc == 0 and err.endswith("postsuper: Requeued: 3 messages\n")
    inst.wait_delivered("alice", 3)
    inst.wait_queue_empty()
    assert postqueue(inst, "-p")[1] == "Mail queue is empty\n"
    for qid, what in ((a, "placed on hold"), (a, "released from hold"), (a, "requeued"),
                      (b, "requeued"), (c, "requeued")):
        assert inst.find_log(rf"^{qid}: {what}$", "postsuper"), (qid, what)


def test_delete_by_id_stdin_all_and_queue(make_instance):
    inst = make_instance()
    a, b, c, d = (deferred(inst, subject=s) for s in "abcd")
    postsuper(inst, "-h", d)
    write_log(inst.queue, "defer", a, [dict(rcpt="alice@localhost", offset=1, dsn="4.0.0",
                                            reason="later")])
    write_log(inst.queue, "bounce", a, [dict(rcpt="alice@localhost", offset=1, dsn="5.0.0",
                                             reason="never")])

    rc, _, err = postsuper(inst, "-d", a)
    assert rc == 0 and err == f"postsuper: {a}: removed\npostsuper: Deleted: 1 message\n"
    assert not (inst.queue / "defer" / a).exists() and not (inst.queue / "bounce" / a).exists()
    assert listing(inst) == {b: "deferred", c: "deferred", d: "hold"}

    # "-" reads ids from stdin; an unknown id is not an error, a bad one warns.
    rc, _, err = postsuper(inst, "-d", "-", stdin=f"{b}\n\nnot/an/id\n1xUcur0vT9jxZZ\n".encode())
    assert rc == 0 and "invalid mail queue id: not/an/id" in err
    assert err.endswith("postsuper: Deleted: 1 message\n")
    assert listing(inst) == {c: "deferred", d: "hold"}

    # ALL limited to one queue leaves the others alone.
    rc, _, err = postsuper(inst, "-d", "ALL", "deferred")
    assert rc == 0 and err.endswith("postsuper: Deleted: 1 message\n")
    assert listing(inst) == {d: "hold"}
    rc, _, err = postsuper(inst, "-d", "ALL")
    assert rc == 0 and err.endswith("postsuper: Deleted: 1 message\n")
    assert postqueue(inst, "-p")[1] == "Mail queue is empty\n"
    assert inst.delivered("alice") == []
    assert postsuper(inst, "-d", "ALL", "nowhere")[0] != 0


def copy_misnamed(inst, qid, queue="deferred"):
    """A copy of qid's file under a name whose inode part is wrong, as after
    restoring a queue from backup: the id must change to the new inode."""
    data = queue_path(inst.queue, queue, qid).read_bytes()
    wrong = qid[:10] + "ZZZZ"
    path = queue_path(inst.queue, queue, wrong)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o700)
    return wrong, path


def test_structure_check(stopped):
    inst = stopped
    good = deferred(inst, subject="good")
    # Misnamed: right place, wrong inode in the name; its defer log follows it.
    src, r = make_queue_file(inst.queue, "deferred", SENDER, ["alice@localhost"],
                             simple_message("restored"))
    wrong, wpath = copy_misnamed(inst, src)
    os.unlink(queue_path(inst.queue, "deferred", src))
    write_log(inst.queue, "defer", wrong, [dict(rcpt="alice@localhost", offset=r[0].offset,
                                                dsn="4.4.1", reason="restored reason")])
    fixed = wrong[:10] + base62(os.stat(wpath).st_ino)   # its time, its inode
    # Misplaced: a correct name at the top of deferred/ instead of its hash dir.
    mis = deferred(inst, subject="misplaced")
    os.rename(queue_path(inst.queue, "deferred", mis), inst.queue / "deferred" / mis)
    # Truncated: cut in the middle of its content.
    trunc = deferred(inst, subject="truncated")
    tpath = queue_path(inst.queue, "deferred", trunc)
    data = tpath.read_bytes()
    tpath.write_bytes(data[:len(data) // 2])
    # A stray directory inside hold/ with a message in it.
    held, _ = make_queue_file(inst.queue, "hold", SENDER, ["x@localhost"], "Subject: h\n\nh\n")
    (inst.queue / "hold" / "old").mkdir()
    os.rename(queue_path(inst.queue, "hold", held), inst.queue / "hold" / "old" / held)

    rc, _, err = postsuper(inst, "-s")
    assert rc == 0, err
    assert fixed != wrong
    assert f"postsuper: {wrong}: renamed to {fixed}" in err
    assert f"postsuper: warning: deferred/{trunc}: malformed or truncated queue file, moved to corrupt/" in err
    assert "Renamed to match inode number: 1 message" in err
    assert "Moved to corrupt queue: 1 message" in err
    assert f"postsuper: {mis}: moved to deferred/{mis[-1]}/\n" in err
    assert f"postsuper: {held}: moved to hold/\n" in err
    assert "Moved to the proper directory: 2 messages" in err
    assert (inst.queue / "corrupt" / trunc).read_bytes() == data[:len(data) // 2]
    assert queue_path(inst.queue, "deferred", mis).exists()
    assert queue_path(inst.queue, "hold", held).exists() and not (inst.queue / "hold" / "old").exists()
    assert read_log(inst.queue, "defer", fixed)[0]["reason"] == "restored reason"
    assert listing(inst) == {good: "deferred", fixed: "deferred", mis: "deferred", held: "hold"}
    rc, out, _ = postqueue(inst, "-p")
    assert "(restored reason)" in out

    # A second run finds nothing to do.
    assert postsuper(inst, "-s") == (0, "", "")


def test_purge_and_default_run(stopped):
    inst = stopped
    incoming = inst.queue / "incoming"
    dead = incoming / "tmp.999999999.0"      # no such pid
    live = incoming / f"tmp.{os.getpid()}.0"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    old_unfinished, _ = make_queue_file(inst.queue, "incoming", SENDER, ["a@localhost"], "x\n",
                                        mode=0o600, mtime=time.time() - 3 * 86400)
    young_unfinished, _ = make_queue_file(inst.queue, "incoming", SENDER, ["a@localhost"], "x\n",
                                          mode=0o600)
    # No option means -s -p.
    rc, _, err = postsuper(inst)
    assert rc == 0, err
    assert not dead.exists() and live.exists()
    assert not (incoming / old_unfinished).exists()
    assert (incoming / young_unfinished).exists()   # cleanup may still be writing it
    assert "Deleted: 2 temporary files" in err


def test_delete_while_delivering(make_instance):
    """postsuper -d ALL racing qmgr and local: every message ends either
    delivered once or deleted, qmgr and master survive, and mail keeps
    flowing afterwards."""
    inst = make_instance()
    qmgr = inst.wait_pids("qmgr")[0]
    for round_ in range(5):
        os.kill(qmgr, signal.SIGSTOP)
        try:
            ids = [inst.send(simple_message(f"r{round_}.{i}", test_id=f"r{round_}.{i}"))
                   for i in range(10)]
        finally:
            os.kill(qmgr, signal.SIGCONT)
        time.sleep(0.01 * round_)
        rc, _, err = postsuper(inst, "-d", "ALL")
        assert rc == 0, err
        inst.wait_queue_empty()
    assert inst.pids("qmgr") == [qmgr]
    seen = {}
    for p in inst.delivered("alice"):
        for line in p.read_bytes().split(b"\n"):
            if line.startswith(b"X-Test-Id: "):
                tid = line[11:].decode()
                seen[tid] = seen.get(tid, 0) + 1
    assert all(n == 1 for n in seen.values()), seen
    before = len(inst.delivered("alice"))
    inst.send(simple_message("after"))
    inst.wait_delivered("alice", before + 1)
