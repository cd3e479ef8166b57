"""The load side of the benchmark (bench.py): Postfix's smtp-source for the
bulk of the messages, a few sessions of our own that time each message,
and Postfix's smtp-sink as the relay destination.

Accept latency is measured by LatencySessions, not by smtp-source (which
prints no timings): k persistent sessions that send the same kind of
message as smtp-source (same size, sender, recipient, no pipelining, one
recipient) in a loop for as long as smtp-source runs, and record for each
message the time from writing MAIL FROM to reading the 250 after the
final ".": the time a client waits for the MTA to take responsibility
(cleanup's fsync included). Connection set-up, banner and EHLO are not in
it. Their messages count towards the totals like smtp-source's.

TLS sessions (scenario e, run_tls_source): smtp-source speaks no TLS, so
every session is our own, in worker processes (TLS_THREADS threads each,
so that the client's own CPU is not one Python interpreter): connect,
banner, EHLO, STARTTLS, handshake (offering the session of the thread's
previous connection, so that each MTA resumes it if it can), EHLO, then
TLS_MESSAGES_PER_CONNECTION messages timed as above, QUIT, reconnect.
"""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __name__ == "__main__":   # a TLS load worker (run_tls_source)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from postern_instance import HELO, RawSMTP, free_port, wait_port  # noqa: E402

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
LINE = 76        # body line length (smtp-source's lines are of this order)


def message_bytes(size, seq, sender, rcpt):
    """A message of about size body bytes, CRLF lines, dot-stuffing not
    needed (no line starts with '.'), ending with the SMTP end of data."""
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: bench {seq}\r\n"
            f"Message-Id: <{seq}.{time.time_ns()}@{HELO}>\r\n\r\n")
    body = (("x" * (LINE - 2)) + "\r\n") * max(1, size // LINE)
    return (head + body + ".\r\n").encode("ascii")


def expect(smtp, code, what):
    got, text = smtp.read_reply()
    if got != code:
        raise AssertionError(f"{what}: {got} {' '.join(text)}")


def timed_transaction(smtp, sender, rcpt, data):
    """One message (MAIL, RCPT, DATA, content); returns the seconds from
    writing MAIL FROM to reading the 250 after the final dot."""
    t0 = time.monotonic()
    smtp.send(f"MAIL FROM:<{sender}>\r\n".encode())
    expect(smtp, 250, "MAIL")
    smtp.send(f"RCPT TO:<{rcpt}>\r\n".encode())
    expect(smtp, 250, "RCPT")
    smtp.send(b"DATA\r\n")
    expect(smtp, 354, "DATA")
    smtp.send(data)
    expect(smtp, 250, "end of data")
    return time.monotonic() - t0


class LatencySessions:
    """k SMTP sessions in threads; start(), then stop() when the bulk load
    is done; .latencies (seconds), .sent, .errors."""

    def __init__(self, port, sessions, size, sender, rcpt, timeout=300.0):
        self.port, self.sessions, self.size = port, sessions, size
        self.sender, self.rcpt, self.timeout = sender, rcpt, timeout
        self.latencies, self.errors = [], []
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._session, args=(i,), daemon=True)
                         for i in range(sessions)]

    def start(self):
        for t in self._threads:
            t.start()

    def stop(self, timeout=300.0):
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self.errors.append("latency sessions did not finish")

    def _session(self, n):
        try:
            with RawSMTP(self.port, timeout=self.timeout) as smtp:
                expect(smtp, 220, "banner")
                smtp.send(f"EHLO {HELO}\r\n".encode())
                expect(smtp, 250, "EHLO")
                seq = 0
                while not self._stop.is_set():
                    data = message_bytes(self.size, f"lat{n}.{seq}", self.sender, self.rcpt)
                    elapsed = timed_transaction(smtp, self.sender, self.rcpt, data)
                    with self._lock:
                        self.latencies.append(elapsed)
                        self.sent += 1
                    seq += 1
                smtp.send(b"QUIT\r\n")
                smtp.read_reply()
        except Exception as e:   # reported by the caller
            with self._lock:
                self.errors.append(f"latency session {n}: {e!r}")


def run_smtp_source(port, sessions, messages, size, sender, rcpt, timeout):
    """Run smtp-source: sessions persistent connections (-d) sharing
    messages messages of size body bytes. Returns (rc, output, its CPU
    seconds): one process drives every session, so its CPU can bound the
    rate it sends at."""
    argv = [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", sender, "-t", rcpt, "-M", HELO, f"127.0.0.1:{port}"]
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT)
        end = time.monotonic() + timeout
        while True:
            # wait4, not wait: the child's own rusage, whatever else this
            # process has running.
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > end:
                p.kill()
                p.wait()
                return None, f"smtp-source did not finish in {timeout}s", 0.0
            time.sleep(0.02)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return p.returncode, text, ru.ru_utime + ru.ru_stime


class Sink:
    """smtp-sink on a free loopback port, counting the messages it takes
    (its -c counters, written to a file)."""

    COUNTER = re.compile(rb"mesg=(\d+)")

    def __init__(self, workdir):
        self.port = free_port()
        self.out_path = os.path.join(workdir, f"sink.{self.port}.out")
        self._out = open(self.out_path, "wb")
        # -u: smtp-sink refuses to keep root privileges; -m: up to 1,000
        # concurrent connections (default 256).
        self.proc = subprocess.Popen(
            [SMTP_SINK, "-u", "nobody", "-c", "-m", "1000", f"127.0.0.1:{self.port}", "1024"],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, 10)
        except AssertionError:
            self.close()
            raise

    def count(self):
        """Messages received so far (the last counter line)."""
        try:
            with open(self.out_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 256))
                tail = f.read()
        except OSError:
            return 0
        found = self.COUNTER.findall(tail)
        return int(found[-1]) if found else 0

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        try:
            os.unlink(self.out_path)
        except OSError:
            pass


def port_is_closed(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


# --- TLS sessions (scenario e) -------------------------------------------------

TLS_THREADS = 5
TLS_MESSAGES_PER_CONNECTION = 1   # a new TLS session per message: what MX traffic mostly is


def tls_client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE   # the bench's self-signed certificate
    return ctx


class TlsWorker:
    """Threads sharing a message budget; each thread runs TLS sessions of
    per_conn messages until the budget is spent."""

    def __init__(self, port, threads, messages, size, sender, rcpt, per_conn):
        self.port, self.size, self.sender, self.rcpt = port, size, sender, rcpt
        self.threads, self.per_conn, self.left = threads, per_conn, messages
        self.ctx = tls_client_context()
        self.lock = threading.Lock()
        self.latencies, self.setups, self.errors = [], [], []
        self.sent = self.connections = self.resumed = 0

    def take(self):
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def connect(self, session, tag):
        """A session ready for MAIL: (smtp, its TLS session, resumed?)."""
        smtp = RawSMTP(self.port, timeout=300)
        expect(smtp, 220, "banner")
        smtp.send(f"EHLO {HELO}\r\n".encode())
        expect(smtp, 250, "EHLO")
        smtp.send(b"STARTTLS\r\n")
        expect(smtp, 220, "STARTTLS")
        smtp.sock = self.ctx.wrap_socket(smtp.sock, session=session)
        smtp.buf = b""
        smtp.send(f"EHLO {HELO}\r\n".encode())
        expect(smtp, 250, "EHLO after STARTTLS")
        # Read after the handshake: TLS 1.3 tickets have arrived by now.
        return smtp, smtp.sock.session, smtp.sock.session_reused

    def thread(self, n):
        session, seq = None, 0
        try:
            while self.take():
                t0 = time.monotonic()
                smtp, session, resumed = self.connect(session, n)
                setup = time.monotonic() - t0
                with self.lock:
                    self.connections += 1
                    self.resumed += bool(resumed)
                    self.setups.append(setup)
                for i in range(self.per_conn):
                    if i and not self.take():
                        break
                    data = message_bytes(self.size, f"tls{os.getpid()}.{n}.{seq}",
                                         self.sender, self.rcpt)
                    elapsed = timed_transaction(smtp, self.sender, self.rcpt, data)
                    with self.lock:
                        self.latencies.append(elapsed)
                        self.sent += 1
                    seq += 1
                smtp.send(b"QUIT\r\n")
                smtp.read_reply()
                smtp.close()
        except Exception as e:   # reported by the parent
            with self.lock:
                self.errors.append(f"tls session {os.getpid()}.{n}: {e!r}")

    def run(self):
        ts = [threading.Thread(target=self.thread, args=(i,)) for i in range(self.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return {"latencies": self.latencies, "setups": self.setups, "errors": self.errors,
                "sent": self.sent, "connections": self.connections, "resumed": self.resumed}


def run_tls_source(port, sessions, messages, size, sender, rcpt, timeout,
                   per_conn=TLS_MESSAGES_PER_CONNECTION):
    """sessions concurrent TLS sessions sending messages messages in all,
    from worker processes of TLS_THREADS threads. Returns a dict:
    latencies, setups (connect to ready for MAIL, s), sent, connections,
    resumed, errors, cpu (the workers' CPU seconds)."""
    workers = max(1, -(-sessions // TLS_THREADS))
    procs = []
    for w in range(workers):
        threads = sessions // workers + (w < sessions % workers)
        share = messages // workers + (w < messages % workers)
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "tls-worker", str(port), str(threads), str(share),
             str(size), sender, rcpt, str(per_conn)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    before = os.times()
    out = {"latencies": [], "setups": [], "errors": [], "sent": 0, "connections": 0,
           "resumed": 0}
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            text, _ = p.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            out["errors"].append("a TLS worker did not finish in time")
            continue
        try:
            r = json.loads(text.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            out["errors"].append(f"TLS worker exited {p.returncode}: {text[-500:]!r}")
            continue
        for k in ("latencies", "setups", "errors"):
            out[k] += r[k]
        for k in ("sent", "connections", "resumed"):
            out[k] += r[k]
    after = os.times()
    out["cpu"] = (after.children_user - before.children_user
                  + after.children_system - before.children_system)
    return out


if __name__ == "__main__" and sys.argv[1:2] == ["tls-worker"]:
    port, threads, messages, size, sender, rcpt, per_conn = sys.argv[2:9]
    result = TlsWorker(int(port), int(threads), int(messages), int(size), sender, rcpt,
                       int(per_conn)).run()
    print(json.dumps(result), flush=True)
