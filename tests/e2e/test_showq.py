"""showq: the queue listing service behind postqueue -p / -j (mailq).

showq speaks Postfix 3's mail_queue_list_protocol (lib/mail/showq_stream.h):
it greets, sends one NUL-terminated attribute list per message and an
empty list, and reads nothing. postqueue asks public/showq first and walks
the queue itself only when showq cannot be reached; either way postqueue
formats (lib/mail/queue_list.c), so the listing through showq is the same
bytes as the direct one, arrival times in the client's time zone as with
Postfix 3. The instances here run smtpd and showq only (no qmgr, cleanup
or pickup), so the fixture queue stays exactly as written while it is
listed. master (and so showq) runs with TZ=UTC and the client with another
zone, which shows the client formats.

The system-mode case (an ordinary user's set-gid postqueue, which cannot
read mail_owner's queue) is in test_system_privileges.py.
"""

import os
import signal
import socket
import subprocess

import pytest

from postern_instance import wait_until
from postfix_reference import POSTQUEUE as POSTFIX_POSTQUEUE, started_postfix
from queue_fixture import Rcpt, make_queue_file, write_log
from test_postqueue import EXPECTED_MAILQ, POSTQUEUE, QUEUES, populate, postqueue


CLIENT_TZ = "JST-9"   # POSIX form, no tzdata needed: a listing formatted here differs


def master_cf(port):
    return (f"127.0.0.1:{port} inet n - n - - smtpd\n"
            "showq unix n - n - - showq\n")


@pytest.fixture
def showq_instance(make_instance, monkeypatch):
    """An instance with empty queues that runs smtpd and showq only; call
    .start() once the fixture queue is written."""
    monkeypatch.setenv("TZ", "UTC")   # master's, and so showq's, time zone

    def make(extra_main=()):
        inst = make_instance(extra_main=extra_main, start=False)
        inst.write_master_cf(master_cf(inst.port))
        for d in QUEUES:
            (inst.queue / d).mkdir(exist_ok=True)
        return inst
    return make


def listings(inst, tz):
    """(text, json) of postqueue -p and -j, each asserted successful."""
    out = []
    for flag in ("-p", "-j"):
        rc, text, err = postqueue(inst, flag, tz=tz)
        assert (rc, err) == (0, ""), (flag, rc, err)
        out.append(text)
    return tuple(out)


def test_listing_through_showq_is_the_same_bytes(showq_instance):
    inst = showq_instance()
    populate(inst)
    direct = listings(inst, "UTC")   # nothing runs yet: postqueue reads the queue
    assert direct[0] == EXPECTED_MAILQ
    direct_client_tz = listings(inst, CLIENT_TZ)
    assert direct_client_tz[0] != EXPECTED_MAILQ
    inst.start()
    assert inst.pids("showq") == []   # master starts showq on demand
    assert listings(inst, "UTC") == direct
    # The client formats, in its own zone, whatever zone showq runs in.
    assert listings(inst, CLIENT_TZ) == direct_client_tz
    assert inst.pids("showq"), "the listing did not come from showq"


def test_long_listing_in_many_chunks(showq_instance):
    """A listing far larger than a socket buffer arrives whole, in both
    formats and with long queue ids."""
    inst = showq_instance(["enable_long_queue_ids = yes"])
    for i in range(400):
        qid, r = make_queue_file(inst.queue, "deferred", f"sender{i}@example.org",
                                 [Rcpt(f"rcpt{i}.{k}@example.com") for k in range(4)],
                                 "Subject: x\n\nhello\n", arrival=1700000000 + i)
        write_log(inst.queue, "defer", qid, [
            dict(rcpt=r[0].address, offset=r[0].offset, dsn="4.4.1",
                 reason=f"connect to mx{i}.example.com[192.0.2.1]:25: Connection refused")])
    direct = listings(inst, CLIENT_TZ)
    assert len(direct[0]) > 3 * 65536 and direct[0].endswith(" in 400 Requests.\n")
    inst.start()
    assert listings(inst, CLIENT_TZ) == direct
    assert inst.pids("showq")


def test_concurrent_clients(showq_instance):
    inst = showq_instance()
    populate(inst)
    direct = listings(inst, "UTC")
    inst.start()
    env = dict(os.environ, TZ=CLIENT_TZ)
    env.pop("MAIL_CONFIG", None)
    procs = [subprocess.Popen([str(POSTQUEUE), "-c", str(inst.etc), "-j"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, env=env)
             for _ in range(12)]
    try:
        for p in procs:
            out, err = p.communicate(timeout=30)
            assert (p.returncode, err) == (0, b""), err
            assert out.decode() == direct[1]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_falls_back_when_the_mail_system_is_down(showq_instance):
    """A postqueue that can read the queue lists it itself when showq does
    not answer: after a master crash the socket is still in public/ but
    nobody listens; after a clean stop it is gone."""
    inst = showq_instance()
    populate(inst)
    inst.start()
    assert listings(inst, "UTC")[0] == EXPECTED_MAILQ
    os.kill(inst.master_pids()[0], signal.SIGKILL)
    wait_until(lambda: not inst.master_pids(), 10, what="master to die")
    assert (inst.queue / "public" / "showq").exists()
    assert listings(inst, "UTC")[0] == EXPECTED_MAILQ
    inst.kill_everything()
    os.unlink(inst.queue / "public" / "showq")
    assert listings(inst, "UTC")[0] == EXPECTED_MAILQ


class ShowqClient:
    """A raw client of public/showq, as monitoring tools are: it connects
    and reads, and sends nothing."""

    def __init__(self, inst, timeout=20.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(inst.queue / "public" / "showq"))
        self.buf = b""

    def recv_more(self):
        """Append what arrives next (the socket timeout is the deadline)."""
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"showq closed the connection after {len(self.buf)} bytes")
        self.buf += chunk

    def recv_all(self):
        """Everything until the server closes the connection."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return self.buf
            self.buf += chunk

    def close(self):
        self.sock.close()


GREETING = b"protocol\0mail_queue_list_protocol\0\0"


def parse_nul_lists(data):
    """Postfix's NUL-terminated attribute lists: a list of [(name, value)]
    per list, the empty list that ends a listing included; asserts that
    nothing dangles after the last NUL."""
    parts = data.split(b"\0")
    assert parts[-1] == b"", "data after the last NUL"
    lists, current, i = [], [], 0
    while i < len(parts) - 1:
        if parts[i] == b"":
            lists.append(current)
            current = []
            i += 1
        else:
            current.append((parts[i].decode(), parts[i + 1].decode()))
            i += 2
    assert current == [], "a list without its end"
    return lists


def test_answer_is_postfix_showq_stream(showq_instance):
    """A client that sends nothing gets Postfix's showq stream: the
    greeting, one list per message with Postfix's attribute names in its
    order, recipients with their reasons ("" for none), the empty list."""
    inst = showq_instance()
    populate(inst)
    inst.start()
    c = ShowqClient(inst)
    try:
        data = c.recv_all()
    finally:
        c.close()
    assert data.startswith(GREETING)
    lists = parse_nul_lists(data)
    assert lists[0] == [("protocol", "mail_queue_list_protocol")]
    assert lists[-1] == []
    head = ["queue_name", "queue_id", "time", "size", "forced_expire", "sender"]
    for msg in lists[1:-1]:
        assert [n for n, _ in msg[:6]] == head
        assert [n for n, _ in msg[6:]] == ["recipient", "reason"] * ((len(msg) - 6) // 2)
    refused = "connect to mx.example.com[192.0.2.1]:25: Connection refused"
    assert lists[1:-1] == [
        [("queue_name", "active"), ("queue_id", "1ActiveAAAAA01"), ("time", "1700000000"),
         ("size", "18"), ("forced_expire", "0"), ("sender", "sender@example.org"),
         ("recipient", "rcpt1@example.com"), ("reason", "")],
        [("queue_name", "deferred"), ("queue_id", "1DeferredBBB02"), ("time", "1700003600"),
         ("size", "3000"), ("forced_expire", "0"), ("sender", "MAILER-DAEMON"),
         ("recipient", "dave@example.net"),
         ("reason", "connect to mx.example.net[192.0.2.2]:25: Connection timed out"),
         ("recipient", "bob@example.com"), ("reason", refused),
         ("recipient", "carol@example.com"), ("reason", refused),
         ("recipient", "eve@example.net"), ("reason", "")],
        [("queue_name", "hold"), ("queue_id", "1HoldCCCCCCC03"), ("time", "1700007200"),
         ("size", "18"), ("forced_expire", "0"), ("sender", "user@example.org"),
         ("recipient", "x@example.com"), ("reason", "")],
    ]


def test_empty_queue_stream(showq_instance):
    inst = showq_instance()
    inst.start()
    c = ShowqClient(inst)
    try:
        assert c.recv_all() == GREETING + b"\0"
    finally:
        c.close()
    assert listings(inst, "UTC") == ("Mail queue is empty\n", "")


def test_client_that_leaves_early(showq_instance):
    """A reader that goes away mid-listing (mailq | head) costs showq
    nothing: the next client gets the whole listing."""
    inst = showq_instance()
    for i in range(300):
        make_queue_file(inst.queue, "hold", "s@example.org", [f"r{i}@example.com"] * 3,
                        "Subject: x\n\nhello\n", arrival=1700000000 + i)
    direct = listings(inst, CLIENT_TZ)
    inst.start()
    c = ShowqClient(inst)
    try:
        while len(c.buf) <= len(GREETING):
            c.recv_more()   # the greeting, then the start of the first message
    finally:
        c.close()
    assert listings(inst, CLIENT_TZ) == direct
    assert not inst.find_log(r"fatal|panic", program="showq")


# --- against Postfix ---------------------------------------------------------------


def test_postfix_postqueue_lists_postern_queue(showq_instance, tmp_path):
    """Postfix's own postqueue (its mailq) lists a Postern queue through
    Postern's showq, byte for byte as Postern's postqueue does."""
    inst = showq_instance()
    populate(inst)
    inst.start()
    cfg = tmp_path / "postfix-etc"
    cfg.mkdir()
    (cfg / "main.cf").write_text(f"compatibility_level = 3.6\nqueue_directory = {inst.queue}\n"
                                 "mail_owner = postfix\nsetgid_group = postdrop\n")
    env = dict(os.environ, TZ=CLIENT_TZ)
    env.pop("MAIL_CONFIG", None)
    ours = listings(inst, CLIENT_TZ)
    for flag, expected in zip(("-p", "-j"), ours):
        p = subprocess.run([POSTFIX_POSTQUEUE, "-c", str(cfg), flag], capture_output=True,
                           text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)
        assert (p.returncode, p.stderr) == (0, ""), flag
        assert p.stdout == expected, flag


def test_postern_postqueue_lists_postfix_queue(tmp_path):
    """Postern's postqueue reads a Postfix showq (deferred and held mail)
    and prints what Postfix's postqueue prints, byte for byte."""
    pf = started_postfix()
    try:
        ids = [pf.send(f"Subject: m{i}\n\nbody {i}\n", [f"r{i}@remote.example", "x@remote.example"],
                       "s@example.org") for i in range(3)]
        ids.append(pf.send("Subject: bounce\n\nx\n", ["y@remote.example"], ""))
        for qid in ids:
            pf.wait_deferred(qid)
        rc, out = pf.run(["/usr/sbin/postsuper", "-c", pf.etc, "-h", ids[0]])
        assert rc == 0, out
        cfg = tmp_path / "postern-etc"
        cfg.mkdir()
        (cfg / "main.cf").write_text(f"queue_directory = {pf.queue}\n")
        env = dict(os.environ, TZ=CLIENT_TZ)
        env.pop("MAIL_CONFIG", None)
        for flag in ("-p", "-j"):
            rc, theirs, err = pf.postqueue(flag, tz=CLIENT_TZ)
            assert rc == 0, err
            p = subprocess.run([str(POSTQUEUE), "-c", str(cfg), flag], capture_output=True,
                               text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)
            assert (p.returncode, p.stderr) == (0, ""), flag
            assert p.stdout == theirs, flag
        assert theirs.count("\n") == 4 and '"queue_name": "hold"' in theirs
    finally:
        print(pf.log_tail())
        pf.cleanup()
