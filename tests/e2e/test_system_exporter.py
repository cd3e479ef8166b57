"""Debian's prometheus-postfix-exporter, unchanged, reports a Postern
instance: it connects to public/showq, reads the stream Postfix 3's showq
sends (Postern's showq sends the same, lib/mail/showq_stream.h) and turns
it into per-queue histograms; with syslog_name = postfix it also counts
the maillog lines it knows.

The queue is made by real traffic: mail for remote.example goes to a
closed port and is deferred, some of it then held with postsuper -h; mail
for slow.example goes to a server that accepts and never speaks, so it
stays in active/ for the test's length; one message sent while qmgr is
stopped stays in incoming/. The exporter's counts must equal the files
in each queue directory, and its size sums the sizes postqueue -j shows.
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

from postern_instance import (BUILD, RawSMTP, clean_env, free_port, simple_message,
                              wait_port, wait_until)

EXPORTER = "/usr/bin/prometheus-postfix-exporter"
POSTQUEUE = BUILD / "bin" / "postqueue"
POSTSUPER = BUILD / "bin" / "postsuper"
QUEUES = ("active", "deferred", "hold", "incoming", "maildrop")


class Tarpit:
    """A TCP server on loopback that accepts connections and never answers,
    so an SMTP client waits for its greeting (and the message stays in
    active/) until the test closes it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.closed = False
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.closed = True
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def tarpit():
    t = Tarpit()
    yield t
    t.close()


class Exporter:
    def __init__(self, inst):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [EXPORTER, f"--postfix.showq_path={inst.queue / 'public' / 'showq'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             f"--postfix.logfile_path={inst.log}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=clean_env())
        wait_port(self.port, 30)

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as r:
            return r.read().decode()

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.stderr.read().decode(errors="replace")


def metric(text, name, **labels):
    """The value of one sample, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{([^}]*)\})? (\S+)$", line)
        if m and m[1] == name and ",".join(sorted((m[2] or "").split(","))) == want:
            return float(m[3])
    return None


def queue_sizes(inst):
    """Message files in each queue directory, deferred/ through its hash level."""
    sizes = {}
    for q in QUEUES:
        n = 0
        for _dirpath, _dirs, files in os.walk(inst.queue / q):
            n += len(files)
        sizes[q] = n
    return sizes


def postqueue_json(inst):
    p = subprocess.run([str(POSTQUEUE), "-c", str(inst.etc), "-j"], capture_output=True,
                       text=True, env=clean_env(), timeout=30)
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines()]


def test_exporter_reports_postern_queue(make_instance, tarpit):
    inst = make_instance(extra_main=[
        "syslog_name = postfix",
        "relayhost = [127.0.0.1]:9",
        f"transport_maps = inline:{{ slow.example=smtp:[127.0.0.1]:{tarpit.port} }}",
    ])
    deferred = [inst.send(simple_message(f"deferred {i}"), rcpts=[f"d{i}@remote.example"])
                for i in range(5)]
    slow = [inst.send(simple_message(f"active {i}"), rcpts=[f"a{i}@slow.example"])
            for i in range(2)]
    wait_until(lambda: all((inst.queue / "deferred" / q[-1] / q).exists() for q in deferred),
               30, what="the deferred messages")
    for qid in deferred[:2]:
        p = subprocess.run([str(POSTSUPER), "-c", str(inst.etc), "-h", qid],
                           capture_output=True, env=clean_env(), timeout=30)
        assert p.returncode == 0, p.stderr
    wait_until(lambda: len(tarpit.held) == 2, 30, what="both slow deliveries to connect")
    qmgr = inst.wait_pids("qmgr")[0]
    os.kill(qmgr, signal.SIGSTOP)
    try:
        inst.send(simple_message("incoming"), rcpts=["i@remote.example"])
        sizes = queue_sizes(inst)
        assert sizes == {"active": 2, "deferred": 3, "hold": 2, "incoming": 1, "maildrop": 0}
        listed = postqueue_json(inst)

        exporter = Exporter(inst)
        try:
            text = exporter.metrics()
            # The log source follows the file from its end: lines written
            # from now on are counted.
            with RawSMTP(inst.port, source=("127.0.0.2", 0), timeout=10) as c:
                assert c.read_reply()[0] == 220
                assert c.cmd("EHLO outside.example")[0] == 250
                assert c.cmd("MAIL FROM:<x@outside.example>")[0] == 250
                assert c.cmd("RCPT TO:<victim@remote.example>")[0] == 554
                c.cmd("QUIT")
            later = wait_until(lambda: (lambda t: t if metric(
                t, "postfix_smtpd_messages_rejected_total", code="554") else None)(
                exporter.metrics()), 30, what="the exporter to count the reject")
        finally:
            err = exporter.close()
    finally:
        os.kill(qmgr, signal.SIGCONT)

    assert metric(text, "postfix_up", path=str(inst.queue / "public" / "showq")) == 1, err
    for q in QUEUES:
        assert metric(text, "postfix_showq_message_size_bytes_count", queue=q) == sizes[q], q
        assert metric(text, "postfix_showq_message_age_seconds_count", queue=q) == sizes[q], q
        total = sum(o["message_size"] for o in listed if o["queue_name"] == q)
        assert metric(text, "postfix_showq_message_size_bytes_sum", queue=q) == total, q
    ages = [time.time() - o["arrival_time"] for o in listed]
    assert metric(text, "postfix_showq_message_age_seconds_sum", queue="deferred") < \
        max(ages) * 3 + 60
    # Its log source, reading the maillog as Postfix's.
    assert metric(later, "postfix_smtpd_messages_rejected_total", code="554") == 1
    assert metric(later, "postfix_smtpd_connects_total") >= 1
