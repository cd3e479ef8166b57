#!/usr/bin/python3
"""Benchmark (not a test): how much memory smtpd needs per idle session.

Starts a Postern instance (the e2e helpers' Instance, in /tmp), opens N
concurrent SMTP sessions (default 5,000) that each read the banner and do
EHLO, then stay idle. Reports the total resident memory of the instance's
smtpd processes before and after, the memory per session, how long setting
the sessions up took, and checks that a sample of the idle sessions still
answers NOOP and that a new client is still served at once.

    /usr/bin/python3 bench/idle_sessions.py [--sessions 5000] [--keep]

Needs `make` first. RLIMIT_NOFILE is raised to its hard limit here (the
client side holds one descriptor per session); smtpd raises its own.
"""

import argparse
import os
import resource
import selectors
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from postern_instance import HELO, Instance, RawSMTP, free_port  # noqa: E402

BATCH = 256          # connections in flight while setting up
DEADLINE = 120.0     # seconds for the whole set-up


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < need:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is below the {need} descriptors needed")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def smtpd_rss(inst):
    pids = inst.pids("smtpd")
    return sum(rss_kib(p) for p in pids), pids


class Session:
    """One client: connect, read the 220, send EHLO, read the 250s, idle."""
    __slots__ = ("sock", "buf", "state")

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))
        self.buf = b""
        self.state = "banner"

    def on_readable(self):
        data = self.sock.recv(4096)
        if not data:
            raise ConnectionError(f"closed in state {self.state}: {self.buf!r}")
        self.buf += data
        while b"\r\n" in self.buf:
            line, self.buf = self.buf.split(b"\r\n", 1)
            if self.state == "banner":
                if not line.startswith(b"220 "):
                    raise ConnectionError(f"bad banner {line!r}")
                self.sock.send(f"EHLO {HELO}\r\n".encode())
                self.state = "ehlo"
            elif self.state == "ehlo":
                if not line.startswith(b"250"):
                    raise ConnectionError(f"bad EHLO reply {line!r}")
                if line[3:4] == b" ":
                    self.state = "idle"


def open_sessions(port, n):
    sel = selectors.DefaultSelector()
    sessions, pending = [], 0
    deadline = time.monotonic() + DEADLINE
    while len(sessions) < n or pending:
        while len(sessions) < n and pending < BATCH:
            s = Session(port)
            sessions.append(s)
            sel.register(s.sock, selectors.EVENT_READ, s)
            pending += 1
        if time.monotonic() > deadline:
            raise SystemExit(f"set-up took over {DEADLINE}s ({len(sessions)} opened)")
        for key, _ in sel.select(timeout=1.0):
            s = key.data
            s.on_readable()
            if s.state == "idle":
                sel.unregister(s.sock)
                pending -= 1
    sel.close()
    return sessions


def noop_sample(sessions, count=100):
    """A sample of the idle sessions still answers NOOP."""
    step = max(1, len(sessions) // count)
    ok = 0
    for s in sessions[::step]:
        s.sock.setblocking(True)
        s.sock.settimeout(10)
        s.sock.sendall(b"NOOP\r\n")
        reply = b""
        while b"\r\n" not in reply:
            chunk = s.sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        ok += reply.startswith(b"250 ")
    return ok, len(sessions[::step])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=5000)
    ap.add_argument("--keep", action="store_true", help="keep the instance directory")
    args = ap.parse_args()
    raise_nofile(args.sessions + 256)

    inst = Instance(free_port(), extra_main=[
        "smtpd_client_connection_count_limit = 0",   # every session comes from 127.0.0.1
        "smtpd_timeout = 600s"])
    sessions = []
    try:
        inst.start()
        # Warm up: one full session so smtpd runs and has touched its code.
        with RawSMTP(inst.port) as c:
            c.read_reply()
            c.cmd(f"EHLO {HELO}")
            time.sleep(0.2)
            base_kib, pids = smtpd_rss(inst)
        t = time.monotonic()
        sessions = open_sessions(inst.port, args.sessions)
        setup = time.monotonic() - t
        time.sleep(1.0)
        full_kib, pids_after = smtpd_rss(inst)
        ok, sampled = noop_sample(sessions)
        t = time.monotonic()
        with RawSMTP(inst.port) as c:
            c.read_reply()
            c.cmd(f"EHLO {HELO}")
        newcomer = time.monotonic() - t
        per_session = (full_kib - base_kib) * 1024 / args.sessions
        print(f"sessions:            {args.sessions} idle (banner + EHLO), "
              f"opened in {setup:.2f}s")
        print(f"smtpd processes:     {len(pids_after)} ({', '.join(map(str, pids_after))})")
        print(f"smtpd RSS:           {base_kib / 1024:.1f} MiB with 1 session, "
              f"{full_kib / 1024:.1f} MiB with {args.sessions}")
        print(f"per session:         {per_session / 1024:.2f} KiB")
        print(f"NOOP on a sample:    {ok}/{sampled} answered")
        print(f"new client EHLO:     {newcomer * 1000:.1f} ms while all are held")
        return 0 if ok == sampled else 1
    finally:
        for s in sessions:
            s.sock.close()
        inst.cleanup(keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
