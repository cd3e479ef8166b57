#!/usr/bin/python3
"""Where the time goes: profiles of Postern (and syscall counts of Postfix
for comparison) under scenario (a) of bench.py: 20 persistent sessions,
2 KB messages, local Maildir delivery. Not a test; writes reports.

    /usr/bin/python3 bench/profile.py perf      [--messages 4000] [--relay] [--size B] [--out DIR]
    /usr/bin/python3 bench/profile.py strace    [--messages 1000] [--mta postern|postfix]
    /usr/bin/python3 bench/profile.py callgrind [--messages 300]

perf       Postern's master runs in the foreground (-d) under
           `perf record -e cpu-clock -g` (the machine has no hardware
           counters: a VM), which follows every daemon it forks. Reports:
           CPU samples by program, then per program the top symbols by
           self time, kernel included (perf-report.txt).
strace     every process of the instance is traced (strace -f -ff: the
           running ones are attached, new ones followed from master), one
           file per process; the calls are counted per program and per
           message (strace-summary.txt). Timing under strace is meaningless;
           the counts are the point.
callgrind  daemon_directory points at wrappers that run smtpd, cleanup,
           qmgr and local under valgrind --tool=callgrind; one profile per
           process, summed per program by callgrind_annotate
           (callgrind-PROGRAM.txt). Instruction counts, exact and
           independent of load.
"""

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mta as mtamod  # noqa: E402
from load import Sink, run_smtp_source  # noqa: E402
from postern_instance import LIBEXEC, POSTERN, free_port, wait_port, wait_until  # noqa: E402
from procstat import comm_of, process_tree  # noqa: E402

SESSIONS = 20
SIZE = 2048   # bytes per message; --size changes it (scenario (c): 102400)
CALL_RE = re.compile(r"^(?:\d+ +)?([a-z_][a-z0-9_]*)\(")
EXEC_RE = re.compile(r'execve\("([^"]+)"')
CALLGRIND_DAEMONS = ("smtpd", "cleanup", "qmgr", "local")


def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def drive(m, messages, deadline=900, sink=None):
    """smtp-source load of scenario (a) on m (of (b) with a sink); waits
    until it is all delivered and the queue is empty. Returns seconds."""
    t0 = time.monotonic()
    rc, out, _cpu = run_smtp_source(m.port, SESSIONS, messages, SIZE, mtamod.SENDER,
                                    mtamod.RELAY_RCPT if sink else mtamod.LOCAL_RCPT,
                                    timeout=deadline)
    if rc != 0:
        raise AssertionError(f"smtp-source exited {rc}: {out[-1000:]}\n{m.log_tail()}")
    done = sink.count if sink else m.delivered
    wait_until(lambda: done() >= messages and m.queued() == 0, deadline, interval=0.1,
               what=f"{messages} deliveries ({done()} so far)")
    return time.monotonic() - t0


# --- perf ---------------------------------------------------------------------------


def foreground_postern(m, wrapper):
    """Start m's master in the foreground under wrapper (argv prefix);
    returns the Popen. `postern stop` ends it."""
    argv = [*wrapper, str(LIBEXEC / "master"), "-c", str(m.etc), "-d"]
    out = open(m.root / "foreground.out", "wb")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                         cwd=str(m.root), env=mtamod.pi.clean_env())
    try:
        wait_port(m.port, 30)
    except AssertionError:
        p.kill()
        p.wait()
        raise
    return p


def stop_foreground(m, p):
    subprocess.run([str(POSTERN), "-c", str(m.etc), "stop"], stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
                   env=mtamod.pi.clean_env())
    try:
        p.wait(120)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)
        p.wait(30)


def perf_report(data, args):
    return subprocess.run(["perf", "report", "-i", str(data), "--stdio", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          timeout=600).stdout.decode("utf-8", "replace")


def run_perf(messages, out, relay=False):
    sink = Sink(str(out)) if relay else None
    m = mtamod.make("postern", free_port(), sink.port if sink else None)
    data = out / "perf.data"
    try:
        p = foreground_postern(m, ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999",
                                   "-g", "-o", str(data)])
        try:
            time.sleep(1)
            took = drive(m, messages, sink=sink)
            log(f"perf: {messages} messages in {took:.1f} s")
        finally:
            stop_foreground(m, p)
    finally:
        m.cleanup()
        if sink:
            sink.close()
    (out / "perf-report.txt").write_text(summarize_perf(data, messages, "b" if relay else "a"))
    log(f"wrote {out / 'perf-report.txt'}")


SELF_RE = re.compile(r"^\s*([\d.]+)%\s+(\[[.k]\])\s+(\S+)")
CHILDREN_RE = re.compile(r"^\s*([\d.]+)%\s+([\d.]+)%\s+\[k\]\s+(__x64_sys_\w+)")


def summarize_perf(data, messages, scenario="a"):
    """Samples by program; per program the share of user and kernel time,
    the system calls that the kernel time went to (inclusive, from the
    kernel's reliable call chains), and the top symbols by self time."""
    by_comm = perf_report(data, ["--no-children", "--sort", "comm", "-g", "none"])
    parts = [f"# perf record -e cpu-clock -g, scenario ({scenario}), {messages} messages",
             "", "## CPU samples by program (share of all samples of the instance)",
             strip_perf(by_comm, 12)]
    for comm in ("cleanup", "local", "remote", "qmgr", "smtpd", "master"):
        flat = perf_report(data, ["--no-children", "--comm", comm, "--sort", "sym", "-g", "none",
                                  "--percentage", "relative"])
        rows = [SELF_RE.match(l) for l in flat.splitlines()]
        rows = [(float(r.group(1)), r.group(2), r.group(3)) for r in rows if r]
        if not rows:
            continue
        user = sum(p for p, kind, _ in rows if kind == "[.]")
        incl = perf_report(data, ["--children", "--comm", comm, "--sort", "sym", "-g", "none",
                                  "--percentage", "relative"])
        calls = [CHILDREN_RE.match(l) for l in incl.splitlines()]
        calls = [(float(c.group(1)), c.group(3)[len("__x64_sys_"):]) for c in calls if c]
        parts.append(f"\n## {comm}: user {user:.0f}%, kernel {100 - user:.0f}% of its samples")
        parts.append("system calls, inclusive share of its samples: " + ", ".join(
            f"{name} {pct:.1f}%" for pct, name in sorted(calls, reverse=True) if pct >= 0.5))
        parts.append("top symbols by self time:")
        parts.extend(f"  {pct:5.1f}% {kind} {sym}" for pct, kind, sym in rows[:18] if pct >= 0.5)
    return "\n".join(parts) + "\n"


def strip_perf(text, limit):
    lines = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
    return "\n".join(lines[:limit])


# --- strace -------------------------------------------------------------------------


class CommWatcher:
    """Maps the pids of an instance to program names while it runs (a
    traced process that exec()s shows its program in its own trace too)."""

    def __init__(self, m):
        self.m, self.names = m, {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(0.05)

    def scan(self):
        root = self.m.master_pid()
        if root:
            for pid in process_tree(root):
                if pid not in self.names:
                    name = comm_of(pid)
                    if name:
                        self.names[pid] = name

    def __enter__(self):
        self.scan()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


def count_trace(path):
    """(program from execve or None, Counter of syscall names) of one
    strace -ff output file."""
    calls, prog = collections.Counter(), None
    with open(path, errors="replace") as f:
        for line in f:
            mm = CALL_RE.match(line)
            if not mm:
                continue
            calls[mm.group(1)] += 1
            if mm.group(1) == "execve":
                e = EXEC_RE.search(line)
                if e and "= 0" in line[-10:]:
                    prog = os.path.basename(e.group(1))
    return prog, calls


def run_strace(kind, messages, out):
    m = mtamod.make(kind, free_port())
    prefix = out / f"strace-{kind}" / "trace"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    try:
        m.start()
        m.qmgr_pid()
        time.sleep(1)
        with CommWatcher(m) as names:
            pids = process_tree(m.master_pid())
            argv = ["strace", "-f", "-ff", "-qq", "-o", str(prefix)]
            for pid in pids:
                argv += ["-p", str(pid)]
            st = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            time.sleep(2)   # attached
            took = drive(m, messages)
            log(f"strace {kind}: {messages} messages in {took:.1f} s")
            time.sleep(1)
            st.send_signal(signal.SIGINT)   # detach
            st.wait(60)
    finally:
        m.cleanup()
    per_prog = collections.defaultdict(collections.Counter)
    for f in prefix.parent.iterdir():
        pid = int(f.name.rsplit(".", 1)[1])
        prog, calls = count_trace(f)
        per_prog[prog or names.names.get(pid, "?")].update(calls)
    lines = [f"# {kind}: system calls per message, scenario (a), {messages} messages, "
             f"strace -f -ff of every process of the instance", ""]
    total = sum(sum(c.values()) for c in per_prog.values())
    lines.append(f"all programs: {total / messages:.1f} calls per message")
    for prog, calls in sorted(per_prog.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(calls.values())
        top = ", ".join(f"{name} {cnt / messages:.2f}" for name, cnt in calls.most_common(14))
        lines.append(f"\n{prog}: {n / messages:.1f} per message\n    {top}")
    text = "\n".join(lines) + "\n"
    (out / f"strace-{kind}.txt").write_text(text)
    print(text)


# --- callgrind ----------------------------------------------------------------------


def callgrind_wrappers(out):
    """A daemon_directory whose smtpd, cleanup, qmgr and local run under
    callgrind and whose other daemons are the real ones."""
    wrap = out / "libexec"
    wrap.mkdir(parents=True, exist_ok=True)
    for real in LIBEXEC.iterdir():
        w = wrap / real.name
        if real.name in CALLGRIND_DAEMONS:
            w.write_text("#!/bin/sh\n"
                         f"exec valgrind --tool=callgrind -q --dump-instr=no "
                         f"--callgrind-out-file={out}/callgrind.{real.name}.%p {real} \"$@\"\n")
        else:
            w.write_text(f"#!/bin/sh\nexec {real} \"$@\"\n")
        w.chmod(0o755)
    return wrap


def run_callgrind(messages, out):
    wrap = callgrind_wrappers(out)
    m = mtamod.Postern(free_port(), extra=[f"daemon_directory = {wrap}"])
    try:
        m.start()
        time.sleep(3)
        took = drive(m, messages, deadline=1800)
        log(f"callgrind: {messages} messages in {took:.1f} s")
        m.stop()
    finally:
        m.cleanup()
    for name in CALLGRIND_DAEMONS:
        files = sorted(out.glob(f"callgrind.{name}.*"))
        if files:
            text = callgrind_summary(name, files, messages)
            (out / f"callgrind-{name}.txt").write_text(text)
            print(text)


IR_RE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$")


def annotate(path, inclusive):
    """{function: Ir} of one callgrind profile (callgrind_annotate reads
    one profile at a time; further arguments are source files to it)."""
    text = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
                           "--threshold=100", "--auto=no", str(path)], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, timeout=600).stdout.decode("utf-8", "replace")
    out = collections.Counter()
    for line in text.splitlines():
        mm = IR_RE.match(line)
        if mm and "=>" not in mm.group(2):
            fn = re.sub(r"^\./[^:]*/", "", mm.group(2))   # libc's source paths are long
            out[fn] += int(mm.group(1).replace(",", ""))
    return out


def callgrind_summary(name, files, messages):
    """Instructions per message of one program, summed over its processes:
    the top functions by self and by inclusive cost."""
    self_ir, incl_ir = collections.Counter(), collections.Counter()
    for f in files:
        self_ir.update(annotate(f, False))
        incl_ir.update(annotate(f, True))
    total = self_ir.pop("PROGRAM TOTALS", 0)
    incl_ir.pop("PROGRAM TOTALS", 0)
    lines = [f"# {name}: {len(files)} processes, {messages} messages, "
             f"{total / messages:,.0f} instructions per message (start-up included)", "",
             "## self cost, instructions per message (share)"]
    for fn, ir in self_ir.most_common(25):
        lines.append(f"{ir / messages:12,.0f} ({100 * ir / total:5.1f}%)  {fn}")
    lines += ["", "## inclusive cost, instructions per message (share)"]
    for fn, ir in incl_ir.most_common(40):
        lines.append(f"{ir / messages:12,.0f} ({100 * ir / total:5.1f}%)  {fn}")
    return "\n".join(lines) + "\n"


def head_lines(text, n):
    return "\n".join(text.splitlines()[:n])


def main():
    global SIZE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tool", choices=("perf", "strace", "callgrind"))
    ap.add_argument("--messages", type=int)
    ap.add_argument("--mta", choices=("postern", "postfix"), default="postern")
    ap.add_argument("--relay", action="store_true",
                    help="perf: scenario (b), relayed to smtp-sink, instead of (a)")
    ap.add_argument("--size", type=int, default=SIZE,
                    help="message size in bytes (102400: scenario (c))")
    ap.add_argument("--out")
    args = ap.parse_args()
    SIZE = args.size
    out = Path(args.out or tempfile.mkdtemp(prefix=f"postern-{args.tool}.", dir="/tmp"))
    out.mkdir(parents=True, exist_ok=True)
    log(f"{args.tool}: output in {out}, load {os.getloadavg()[0]:.1f}")
    if args.tool == "perf":
        run_perf(args.messages or 4000, out, relay=args.relay)
    elif args.tool == "strace":
        run_strace(args.mta, args.messages or 1000, out)
    else:
        run_callgrind(args.messages or 300, out)


if __name__ == "__main__":
    main()
