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
"""

import os
import re
import shutil
import socket
import subprocess
import threading
import time

from postern_instance import HELO, RawSMTP, free_port, wait_port

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

    def _expect(self, smtp, code, what):
        got, text = smtp.read_reply()
        if got != code:
            raise AssertionError(f"{what}: {got} {' '.join(text)}")

    def _session(self, n):
        try:
            with RawSMTP(self.port, timeout=self.timeout) as smtp:
                self._expect(smtp, 220, "banner")
                smtp.send(f"EHLO {HELO}\r\n".encode())
                self._expect(smtp, 250, "EHLO")
                seq = 0
                while not self._stop.is_set():
                    data = message_bytes(self.size, f"lat{n}.{seq}", self.sender, self.rcpt)
                    t0 = time.monotonic()
                    smtp.send(f"MAIL FROM:<{self.sender}>\r\n".encode())
                    self._expect(smtp, 250, "MAIL")
                    smtp.send(f"RCPT TO:<{self.rcpt}>\r\n".encode())
                    self._expect(smtp, 250, "RCPT")
                    smtp.send(b"DATA\r\n")
                    self._expect(smtp, 354, "DATA")
                    smtp.send(data)
                    self._expect(smtp, 250, "end of data")
                    elapsed = time.monotonic() - t0
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
    messages messages of size body bytes. Returns (rc, output)."""
    argv = [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size),
            "-f", sender, "-t", rcpt, "-M", HELO, f"127.0.0.1:{port}"]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"smtp-source did not finish in {timeout}s"
    return p.returncode, p.stdout.decode("utf-8", "replace")


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
