"""showq: the queue listing service behind postqueue -p / -j (mailq).

postqueue asks public/showq first and reads the queue itself only when
showq cannot be reached; both paths format with lib/queue_list.c, so the
listing through showq is the same bytes as the direct one. The instances
here run smtpd and showq only (no qmgr, cleanup or pickup), so the fixture
queue stays exactly as written while it is listed. showq formats arrival
times in its own time zone (as Postfix's does): master is started with
TZ=UTC, and the client's TZ is set to something else to show which
process formatted the listing.

The system-mode case (an ordinary user's set-gid postqueue, which cannot
read mail_owner's queue) is in test_system_privileges.py.
"""

import json
import os
import signal
import socket
import subprocess

import pytest

from postern_instance import wait_until
from queue_fixture import Rcpt, attr_list, make_queue_file, parse_records, write_log
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
    inst.start()
    assert inst.pids("showq") == []   # master starts showq on demand
    via_showq = listings(inst, CLIENT_TZ)
    assert via_showq == direct
    assert inst.pids("showq"), "the listing did not come from showq"
    # The same client reading the queue itself formats in its own zone.
    inst.stop()
    assert listings(inst, CLIENT_TZ)[0] != EXPECTED_MAILQ


def test_long_listing_in_many_chunks(showq_instance):
    """A listing far larger than one content record (64 KiB) arrives
    whole, in both formats and with long queue ids."""
    inst = showq_instance(["enable_long_queue_ids = yes"])
    for i in range(400):
        qid, r = make_queue_file(inst.queue, "deferred", f"sender{i}@example.org",
                                 [Rcpt(f"rcpt{i}.{k}@example.com") for k in range(4)],
                                 "Subject: x\n\nhello\n", arrival=1700000000 + i)
        write_log(inst.queue, "defer", qid, [
            dict(rcpt=r[0].address, offset=r[0].offset, dsn="4.4.1",
                 reason=f"connect to mx{i}.example.com[192.0.2.1]:25: Connection refused")])
    direct = listings(inst, "UTC")
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
    """A raw showq_protocol client, for what postqueue never does."""

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


GREETING = attr_list([("protocol", "showq_protocol")])


def test_answer_is_content_records_then_end(showq_instance):
    """showq_protocol as lib/ipc.h documents it."""
    inst = showq_instance()
    populate(inst)
    inst.start()
    c = ShowqClient(inst)
    try:
        c.sock.sendall(attr_list([("format", "text")]))
        data = c.recv_all()
    finally:
        c.close()
    assert data.startswith(GREETING)
    records = parse_records(data[len(GREETING):])
    assert [t for t, _, _ in records] == ["C"] * (len(records) - 1) + ["E"]
    assert b"".join(p for _, p, _ in records).decode() == EXPECTED_MAILQ


def test_bad_request_gets_no_listing(showq_instance):
    inst = showq_instance()
    populate(inst)
    inst.start()
    c = ShowqClient(inst)
    try:
        c.sock.sendall(attr_list([("format", "xml")]))
        data = c.recv_all()
    finally:
        c.close()
    # The greeting, then the connection closes: no content, no end record.
    assert data == GREETING
    inst.wait_log(r"^warning: bad request: format xml$", program="showq")
    assert listings(inst, "UTC")[0] == EXPECTED_MAILQ   # and showq still serves


def test_client_that_leaves_early(showq_instance):
    """A reader that goes away mid-listing (mailq | head) costs showq
    nothing: the next client gets the whole listing."""
    inst = showq_instance()
    for i in range(300):
        make_queue_file(inst.queue, "hold", "s@example.org", [f"r{i}@example.com"] * 3,
                        "Subject: x\n\nhello\n", arrival=1700000000 + i)
    direct = listings(inst, "UTC")
    inst.start()
    c = ShowqClient(inst)
    try:
        c.sock.sendall(attr_list([("format", "text")]))
        while len(c.buf) <= len(GREETING):
            c.recv_more()   # the greeting, then the first content record
    finally:
        c.close()
    assert listings(inst, CLIENT_TZ) == direct
    assert not inst.find_log(r"fatal|panic", program="showq")
