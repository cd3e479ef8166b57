"""Per-instance resource accounting from /proc, for the Postfix comparison
(bench.py): the CPU time and resident memory of every process of one MTA
instance, without cgroups.

An instance is its master process and every descendant of it. CPU seconds
are counted as utime + stime + cutime + cstime of the master plus those of
every live descendant. A daemon that exits (max_use, max_idle) is reaped by
its master with waitpid(), and the kernel then adds its whole lifetime's
utime/stime (and the cutime/cstime it had collected) to the master's
cutime/cstime: so a snapshot at any instant covers every process the
instance ever ran, living or exited, and the difference of two snapshots is
exactly the CPU spent between them. Only a child that has exited but is
not yet reaped at the instant of a snapshot is missed (a zombie keeps no
times in /proc/PID/stat that the parent has not yet taken); masters reap at
once, so that is at most a few clock ticks.

Memory: a sampler thread (Sampler) sums VmRSS (and Pss from smaps_rollup)
over the instance's processes every interval and keeps the largest sum
seen. It also keeps, per program, the CPU time and the time spent waiting
for a CPU (schedstat), which shows when one busy process (Postern's single
smtpd) is starved by a loaded machine. RSS
counts shared library pages once per process, Pss divides them among the
sharers; both are reported, RSS is the issue's figure.
"""

import os
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_stat(pid):
    """(ppid, utime+stime+cutime+cstime in ticks, state) of pid, or None."""
    st = read_stat_full(pid)
    return None if st is None else (st[0], st[1] + st[2], st[3])


def read_stat_full(pid):
    """(ppid, own utime+stime, children's cutime+cstime, state) in clock
    ticks, or None when pid is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    # fields[0] is the state (stat field 3), so field n is fields[n - 3].
    fields = data[data.rfind(b")") + 2:].split()
    try:
        return (int(fields[1]), int(fields[11]) + int(fields[12]),
                int(fields[13]) + int(fields[14]), fields[0].decode())
    except (IndexError, ValueError):
        return None


def start_time(pid):
    """The start time of pid in clock ticks since boot (tells a pid from a
    later process that reuses it), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rfind(b")") + 2:].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_tree(root_pid):
    """[pid] of root_pid and all its live descendants."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = read_stat(name)
        if st is None:
            continue
        children.setdefault(st[0], []).append(int(name))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(root_pid):
    """CPU seconds (user + system) used so far by the instance under
    root_pid, exited and reaped children included (see the module comment)."""
    total = 0
    for pid in process_tree(root_pid):
        st = read_stat(pid)
        if st is not None:
            total += st[1]
    return total / CLK_TCK


def machine_cpu():
    """(busy, total) CPU seconds of the whole machine since boot, from
    /proc/stat: busy is everything but idle and iowait, every process,
    kernel thread and interrupt included."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    total = sum(ticks[:8])    # guest time is already in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def status_kib(pid, field):
    """A "Field: N kB" value of /proc/PID/status, 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_delay_ns(pid):
    """Nanoseconds pid has spent runnable on a run queue without a CPU
    (/proc/PID/schedstat, second field), or None."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


def comm_of(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


class Sampler:
    """Samples the instance under root_pid every interval seconds in a
    thread. Keeps the peaks of the summed VmRSS and Pss (the most memory
    the instance held at one time) and of the process count, and each
    process's own CPU ticks, for an approximate split of CPU by program
    (cpu_split: a process that exits loses at most its last interval)."""

    def __init__(self, root_pid, interval=0.5):
        self.root_pid, self.interval = root_pid, interval
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self._ticks = {}    # pid -> [comm, ticks at first sight, ticks last seen]
        self._waits = {}    # pid -> [run-queue wait ns at first sight, last seen]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._first = True

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self):
        rss = pss = n = 0
        for pid in process_tree(self.root_pid):
            st = read_stat_full(pid)
            if st is None or st[3] == "Z":
                continue
            entry = self._ticks.get(pid)
            if entry is None:
                # A process born after the start counts from zero.
                entry = self._ticks[pid] = [comm_of(pid) or "?", st[1] if self._first else 0, st[1]]
            entry[2] = st[1]
            w = run_delay_ns(pid)
            if w is not None:
                we = self._waits.get(pid)
                if we is None:
                    we = self._waits[pid] = [w if self._first else 0, w]
                we[1] = w
            r = status_kib(pid, "VmRSS")
            if r:
                rss += r
                pss += pss_kib(pid)
                n += 1
        self._first = False
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_procs = max(self.peak_procs, n)

    def wait_split(self):
        """{program: seconds its processes spent runnable but waiting for a
        CPU while sampling} (schedstat run_delay)."""
        out = {}
        for pid, (first, last) in self._waits.items():
            comm = self._ticks.get(pid, ["?"])[0]
            out[comm] = out.get(comm, 0.0) + (last - first) / 1e9
        return out

    def cpu_split(self):
        """{program: CPU seconds used while sampling}."""
        out = {}
        for comm, first, last in self._ticks.values():
            out[comm] = out.get(comm, 0.0) + (last - first) / CLK_TCK
        return out

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self.sample()


def wait_quiet(pid, quiet_for=1.0, timeout=300.0, poll=0.02):
    """Wait until process pid has used no CPU for quiet_for seconds.
    Returns (time.monotonic() of its last CPU use, its CPU seconds then),
    or None when it died. CPU is read at clock-tick resolution."""
    start = time.monotonic()
    st = read_stat(pid)
    if st is None:
        return None
    last_ticks, last_change = st[1], start
    while True:
        time.sleep(poll)
        now = time.monotonic()
        st = read_stat(pid)
        if st is None or st[2] == "Z":
            return None
        if st[1] != last_ticks:
            last_ticks, last_change = st[1], now
        elif now - last_change >= quiet_for:
            return last_change, last_ticks / CLK_TCK
        if now - start > timeout:
            raise AssertionError(f"process {pid} still busy after {timeout}s")


def started_monotonic(pid):
    """When pid started, on the time.monotonic() clock (clock-tick
    precision), or None."""
    ticks = start_time(pid)
    if ticks is None:
        return None
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.monotonic() - (uptime - ticks / CLK_TCK)
