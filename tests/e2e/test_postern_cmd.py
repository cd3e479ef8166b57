"""The postern command: status counts the queues, start and reload refuse an
invalid configuration with its file and line, abort stops at once, flush
retries deferred mail now, check reports, start-fg with maillog_file =
/dev/stdout logs to master's standard output, the default logging goes to
syslog (facility mail, ident postern/NAME), and a stop in the middle of a
1,000-message load loses no accepted message."""

import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from postern_instance import (POSTERN, SENDER, all_delivered, clean_env, run_logged, send_in_session,
                              simple_message, wait_port, wait_until)


def status_counts(out):
    counts = {}
    for line in out.splitlines():
        m = re.match(r"^(maildrop|incoming|active|deferred|hold|corrupt)\s+(\d+)$", line)
        if m:
            counts[m[1]] = int(m[2])
    return counts


def test_status_counts_each_queue(make_instance):
    inst = make_instance()
    inst.send(simple_message(subject="counted"))
    inst.wait_delivered("alice", 1)
    inst.wait_queue_empty()
    # hold/ and corrupt/ are never touched by qmgr; files there stay put.
    for i in range(3):
        (inst.queue / "hold" / f"HOLD{i}").write_bytes(b"x")
    (inst.queue / "corrupt" / "BAD0").write_bytes(b"x")
    rc, out = inst.postern("status")
    assert rc == 0 and "is running: PID: " in out, out
    assert status_counts(out) == {"maildrop": 0, "incoming": 0, "active": 0, "deferred": 0,
                                  "hold": 3, "corrupt": 1}, out
    inst.stop()
    rc, out = inst.postern("status")
    assert rc == 1 and "not running" in out, out
    assert status_counts(out)["hold"] == 3, out


def test_start_refuses_bad_main_cf_with_file_and_line(make_instance):
    inst = make_instance(start=False)
    lines = (inst.etc / "main.cf").read_text().splitlines()
    inst.append_main_cf("message_size_limit = lots")
    rc, out = inst.postern("start")
    assert rc != 0, out
    assert f"{inst.etc}/main.cf, line {len(lines) + 1}: bad numerical parameter value" in out, out
    assert not inst.master_pids()


def test_start_and_reload_refuse_bad_master_cf_with_file_and_line(make_instance):
    inst = make_instance(start=False)
    good = (inst.etc / "master.cf").read_text()
    inst.write_master_cf(good + "# a comment\nbounce unix - - maybe - 0 bounce\n")
    rc, out = inst.postern("start")
    assert rc != 0, out
    bad_line = len(good.splitlines()) + 2
    assert f"{inst.etc}/master.cf, line {bad_line}: bad chroot field" in out, out
    assert not inst.master_pids()

    inst.write_master_cf(good)
    inst.start()
    rc, before = inst.postern("status")
    inst.write_master_cf(good + "qmgr fifo n - n soon 1 qmgr\n")
    rc, out = inst.postern("reload")
    assert rc != 0 and f"{inst.etc}/master.cf, line {len(good.splitlines()) + 1}" in out, out
    rc, after = inst.postern("status")
    pid = re.search(r"PID: (\d+)", before)[1]
    assert rc == 0 and f"PID: {pid}" in after, (before, after)
    assert not inst.find_log(r"^reload", program="master")


def test_check_reports_and_passes(make_instance):
    inst = make_instance(start=False)
    rc, out = inst.postern("check")
    assert rc == 0, out
    inst.append_main_cf("no_such_knob = 1")
    good = (inst.etc / "master.cf").read_text()
    inst.write_master_cf(good + "nothere unix - - n - - no-such-daemon\n")
    line = len(good.splitlines()) + 1
    rc, out = inst.postern("check")
    assert "unused parameter: no_such_knob=1" in out, out   # Postfix's wording
    assert re.search(rf"master.cf, line {line}: service nothere: cannot run .*/no-such-daemon",
                     out), out
    # A service whose program is missing is left out; the rest starts.
    inst.start()
    inst.wait_log(r"service nothere: cannot run .*no-such-daemon.*; service skipped",
                  program="master", timeout=5)
    inst.send(simple_message(subject="still works"))
    inst.wait_delivered("alice", 1)


def test_abort_stops_at_once(make_instance):
    inst = make_instance()
    assert inst.master_pids()
    t0 = time.monotonic()
    rc, out = inst.postern("abort")
    assert rc == 0, out
    wait_until(lambda: not inst.live_pids(), 10, what="every process to exit after abort")
    assert time.monotonic() - t0 < 8
    rc, out = inst.postern("status")
    assert rc == 1, out


def test_flush_retries_deferred_mail_now(make_instance):
    # A long queue_run_delay and backoff: without flush the deferred
    # message would wait for minutes.
    inst = make_instance(extra_main=["queue_run_delay = 3600s",
                                     "minimal_backoff_time = 3600s",
                                     "maximal_backoff_time = 3600s"])
    blocker = inst.mail / "bob"
    blocker.write_text("a file where bob's Maildir should be\n")
    qid = inst.send(simple_message(subject="deferred then flushed"), rcpts=["bob@localhost"])
    inst.wait_log(r"to=<bob@localhost>.*status=deferred", program="local", timeout=20)
    inst.wait_deferred(qid)
    blocker.unlink()
    assert not inst.delivered("bob")
    rc, out = inst.postern("flush")
    assert rc == 0, out
    inst.wait_delivered("bob", 1, timeout=15)


def test_start_fg_logs_to_dev_stdout(make_instance):
    inst = make_instance(start=False, extra_main=["maillog_file = /dev/stdout"])
    proc = subprocess.Popen([str(POSTERN), "-c", str(inst.etc), "start-fg"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=clean_env(), cwd=str(inst.root))
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(
        l.decode("utf-8", "replace") for l in proc.stdout), daemon=True)
    reader.start()
    try:
        wait_port(inst.port, 15)
        qid = inst.send(simple_message(subject="to stdout"))
        inst.wait_delivered("alice", 1)
        wait_until(lambda: any(f"postern/local[" in l and f"{qid}: to=<alice@localhost>" in l
                               and "status=sent" in l for l in list(lines)), 10,
                   what="the delivery line on master's stdout")
        assert any(re.search(r" postern/smtpd\[\d+\]: " + qid + ": client=", l)
                   for l in list(lines)), lines
        assert any(re.search(r" postern/master\[\d+\]: daemon started", l) for l in lines)
        # master logs each line once: not echoed to stderr (= stdout here) too.
        assert sum("daemon started" in l for l in lines) == 1, lines
        assert not inst.log.exists() or not inst.log.read_text()
        rc, out = inst.postern("stop")
        assert rc == 0, out
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_default_logging_is_syslog_facility_mail(make_instance, tmp_path):
    """With maillog_file empty every program logs through syslog(3) to
    /dev/log, facility mail, ident postern/NAME. This test plays the syslog
    daemon: its socket is /dev/log itself when the machine has none, and
    otherwise is bind-mounted over /dev/log in a private mount namespace
    that the instance is started in, so the machine's syslog never sees
    the test's lines. Needs root (make check runs as root)."""
    if os.geteuid() != 0:
        pytest.fail("binding /dev/log needs root (make check runs as root)")
    private = os.path.exists("/dev/log")
    path = str(tmp_path / "log.sock") if private else "/dev/log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    # Read from the start: a full datagram queue would block every logger.
    got, done = [], threading.Event()

    def drain():
        sock.settimeout(0.2)
        while not done.is_set():
            try:
                got.append(sock.recv(8192).decode("utf-8", "replace"))
            except socket.timeout:
                pass
            except OSError:
                return
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        inst = make_instance(start=False, extra_main=["maillog_file ="])
        if private:
            rc, out = run_logged(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                  'mount --bind "$1" /dev/log && exec "$2" -c "$3" start',
                                  "sh", path, str(POSTERN), str(inst.etc)],
                                 30, cwd=str(inst.root), env=clean_env())
            assert rc == 0, out
            wait_port(inst.port, 15)
        else:
            inst.start()
        tag = f"syslog-{time.time_ns()}"
        qid = inst.send(simple_message(subject=tag, test_id=tag))
        inst.wait_delivered("alice", 1)
        want = re.compile(r"^<22>\w{3} [ \d]\d \d\d:\d\d:\d\d postern/local\[\d+\]: "
                          + qid + r": to=<alice@localhost>.*status=sent")
        wait_until(lambda: any(want.match(g) for g in list(got)), 15,
                   what="the delivery line on /dev/log")
        assert any(re.match(r"^<22>.* postern/smtpd\[\d+\]: " + qid + ": client=", g)
                   for g in list(got)), got[-20:]
        assert any(re.match(r"^<22>.* postern/master\[\d+\]: daemon started", g)
                   for g in list(got)), got[-20:]
        assert not inst.log.exists() or not inst.log.read_text()
        inst.stop()
    finally:
        done.set()
        reader.join(5)
        sock.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# --- stop during load -------------------------------------------------------

TOTAL = 1000
THREADS = 10
TEST_ID_RE = re.compile(rb"\nX-Test-Id: (\S+)\n")


def loader(inst, ids, accepted, lock, deadline, errors):
    """Send each message in its own session until it is accepted (the stop
    makes sessions fail; after the next start they succeed)."""
    pending = list(ids)
    s = None
    while pending and time.monotonic() < deadline:
        test_id = pending[0]
        try:
            s = inst.smtp(timeout=20)
            code, _ = s.ehlo()
            if code != 250:
                raise ConnectionError(f"EHLO {code}")
            msg = simple_message(subject=test_id, test_id=test_id)
            qid = send_in_session(s, msg, ["load@localhost"], SENDER)
            with lock:
                accepted[test_id] = qid
            pending.pop(0)
            s.quit()
            s = None
        except AssertionError as e:
            # A 4xx while the system goes down: not accepted, send again.
            errors.append(repr(e))
            s = close_quietly(s)
            time.sleep(0.2)
        except (OSError, EOFError) as e:
            errors.append(repr(e))
            s = close_quietly(s)
            time.sleep(0.2)
    close_quietly(s)


def close_quietly(s):
    if s is not None:
        try:
            s.close()
        except Exception:
            pass
    return None


def delivered_ids(inst):
    ids = set()
    for path in all_delivered(inst.mail):
        try:
            m = TEST_ID_RE.search(path.read_bytes())
        except FileNotFoundError:
            continue
        if m:
            ids.add(m[1].decode())
    return ids


def test_stop_during_load_loses_nothing(make_instance):
    inst = make_instance()
    ids = [f"stopload-{i:04d}" for i in range(TOTAL)]
    accepted, lock, errors = {}, threading.Lock(), []
    deadline = time.monotonic() + 100
    threads = [threading.Thread(target=loader,
                                args=(inst, ids[k::THREADS], accepted, lock, deadline, errors),
                                daemon=True) for k in range(THREADS)]
    for t in threads:
        t.start()
    wait_until(lambda: len(accepted) >= 300, 60, interval=0.05, what="300 accepted messages")
    rc, out = inst.postern("stop", timeout=60)
    assert rc == 0, out
    wait_until(lambda: not inst.live_pids(), 15, what="every process to exit after stop")
    with lock:
        at_stop = dict(accepted)
    assert len(at_stop) < TOTAL, "the stop came too late to test anything"
    inst.start()
    for t in threads:
        t.join(max(1, deadline - time.monotonic()))
    assert len(accepted) == TOTAL, f"{len(accepted)} accepted; errors: {errors[-5:]}"
    # Every message accepted before the stop (and after) is delivered.
    wait_until(lambda: delivered_ids(inst) >= set(accepted), 60, interval=0.5,
               what="every accepted message to be delivered")
    assert set(at_stop) <= delivered_ids(inst)
    inst.wait_queue_empty(30)
