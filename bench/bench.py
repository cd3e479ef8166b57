#!/usr/bin/python3
"""Throughput benchmark, Postern against Postfix on the same machine
(issue 9; `make bench` runs this). Not a test: it measures and prints.

For each scenario it runs Postfix and Postern alternately (fresh instances
in /tmp each time, mta.py), drives each with smtp-source plus a few timed
sessions of our own (load.py), and measures:

  accept/s      messages accepted / time until the last 250 after DATA
  e2e/s         messages / time until every message is in the Maildir (or
                counted by smtp-sink) and the queue is empty
  p50, p99 ms   accept latency, MAIL FROM to the 250 after DATA (load.py)
  CPU s/1000    CPU seconds of all the instance's processes per 1,000
                messages, from the first byte sent to the empty queue
                (procstat.py: master's cutime/cstime carry exited children)
  RSS, PSS MiB  peak of the summed memory of all the instance's processes

Each figure is reported for each MTA as the median of the runs, and as the
ratio Postern/Postfix: the median of the per-pair ratios (a pair is one
Postfix run and one Postern run next to each other).

Scenarios (message counts times --scale):
  a  20 sessions, 10,000 messages of 2 KB, local Maildir delivery
  b  the same, relayed to smtp-sink
  c  20 sessions, 2,000 messages of 100 KB, local Maildir delivery
  d  200 sessions, 10,000 messages of 2 KB, local Maildir delivery
  q  100,000 deferred messages: qmgr start-up and postqueue -p (deferred.py)

    /usr/bin/python3 bench/bench.py [--scale S] [--runs N] [--scenarios abcdq]
                                    [--out DIR]
Environment: BENCH_SCALE, BENCH_RUNS, BENCH_SCENARIOS set the defaults.
Needs root (a Postfix instance), `make all`, and Debian's postfix.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mta as mtamod  # noqa: E402
from load import LatencySessions, Sink, run_smtp_source  # noqa: E402
from postern_instance import free_port  # noqa: E402
from procstat import Sampler, cpu_seconds  # noqa: E402

DEFAULT_SCALE = 0.5
DEFAULT_RUNS = 3


@dataclass
class Scenario:
    key: str
    title: str
    sessions: int
    messages: int
    size: int
    relay: bool

    def scaled(self, scale):
        return max(self.sessions * 5, int(round(self.messages * scale)))


SCENARIOS = {
    "a": Scenario("a", "20 sessions, 2 KB, local Maildir", 20, 10000, 2048, False),
    "b": Scenario("b", "20 sessions, 2 KB, relayed to smtp-sink", 20, 10000, 2048, True),
    "c": Scenario("c", "20 sessions, 100 KB, local Maildir", 20, 2000, 102400, False),
    "d": Scenario("d", "200 sessions, 2 KB, local Maildir", 200, 10000, 2048, False),
}

# name, unit, True when higher is better
METRICS = [
    ("accept_rate", "msg/s", True),
    ("e2e_rate", "msg/s", True),
    ("lat_p50_ms", "ms", False),
    ("lat_p99_ms", "ms", False),
    ("cpu_per_1000", "s", False),
    ("peak_rss_mib", "MiB", False),
    ("peak_pss_mib", "MiB", False),
]


def log(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def load1():
    return round(os.getloadavg()[0], 2)


def percentile(values, p):
    """The p-th percentile (nearest rank) of values, or None."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))   # ceil(p/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


def latency_sessions_for(sessions):
    """How many of the sessions are our timed ones: a tenth, 1 to 10."""
    return max(1, min(10, sessions // 10))


def wait_done(mta, sink, total, deadline):
    """Poll until total messages are delivered (Maildir or sink) and the
    queue is empty; returns the monotonic time it was first seen so."""
    while True:
        got = sink.count() if sink else mta.delivered()
        if got >= total and mta.queued() == 0:
            return time.monotonic(), got
        if time.monotonic() > deadline:
            raise AssertionError(f"{mta.name}: {got} of {total} delivered, "
                                 f"{mta.queued()} still queued at the deadline\n{mta.log_tail()}")
        time.sleep(0.05)


# Instance trees of finished runs, removed only when the whole benchmark is
# over (unless --delete-between-runs). On ext4 without a journal every new
# inode is allocated past each inode freed in its block group in the last
# half minute (minutes while the inode table is dirty): deleting a run's
# 10,000 Maildir and queue files made the next run, of either MTA, pay for
# them on every file it created (up to a quarter of all samples).
spent_roots = []
delete_between_runs = False


def release_instance(m):
    m.cleanup(keep=not delete_between_runs)
    if not delete_between_runs:
        spent_roots.append(m.root)


def remove_spent_instances():
    while spent_roots:
        shutil.rmtree(spent_roots.pop(), ignore_errors=True)


def run_once(kind, sc, messages, workdir):
    """One measured run of one MTA on one scenario; returns its figures."""
    k = latency_sessions_for(sc.sessions)
    src_sessions = sc.sessions - k
    src_messages = max(src_sessions, int(round(messages * src_sessions / sc.sessions)))
    sink = Sink(workdir) if sc.relay else None
    try:
        m = mtamod.make(kind, free_port(), sink.port if sink else None, sessions=sc.sessions)
        try:
            m.start()
            m.qmgr_pid()
            time.sleep(1.0)   # let the start-up settle (its CPU is not counted)
            master = m.master_pid()
            rcpt = mtamod.RELAY_RCPT if sc.relay else mtamod.LOCAL_RCPT
            load_before = load1()
            cpu0 = cpu_seconds(master)
            with Sampler(master) as sampler:
                t0 = time.monotonic()
                lat = LatencySessions(m.port, k, sc.size, mtamod.SENDER, rcpt)
                lat.start()
                rc, out = run_smtp_source(m.port, src_sessions, src_messages, sc.size,
                                          mtamod.SENDER, rcpt, timeout=max(600, messages))
                lat.stop()
                t_accept = time.monotonic()
                if rc != 0:
                    raise AssertionError(f"{kind}: smtp-source exited {rc}: {out[-2000:]}\n"
                                         f"{m.log_tail()}")
                if lat.errors:
                    raise AssertionError(f"{kind}: {lat.errors[:3]}\n{m.log_tail()}")
                total = src_messages + lat.sent
                t_done, got = wait_done(m, sink, total, t_accept + max(300, messages * 0.1))
                cpu1 = cpu_seconds(master)
            split, waits = sampler.cpu_split(), sampler.wait_split()
            return {
                "mta": kind,
                "messages": total,
                "delivered": got,
                "accept_rate": total / (t_accept - t0),
                "e2e_rate": total / (t_done - t0),
                "lat_p50_ms": percentile(lat.latencies, 50) * 1000,
                "lat_p99_ms": percentile(lat.latencies, 99) * 1000,
                "lat_samples": len(lat.latencies),
                "cpu_per_1000": (cpu1 - cpu0) / total * 1000,
                "cpu_total": cpu1 - cpu0,
                "cpu_split": {n: round(v, 2) for n, v in sorted(split.items(), key=lambda x: -x[1])},
                "wait_split": {n: round(v, 2) for n, v in sorted(waits.items(), key=lambda x: -x[1])},
                "peak_rss_mib": sampler.peak_rss / 1024,
                "peak_pss_mib": sampler.peak_pss / 1024,
                "peak_procs": sampler.peak_procs,
                "wall_accept": t_accept - t0,
                "wall_e2e": t_done - t0,
                "load_before": load_before,
                "load_after": load1(),
            }
        finally:
            release_instance(m)
    finally:
        if sink:
            sink.close()


def ratio(a, b):
    return a / b if a is not None and b else None


def summarize(runs):
    """{metric: (postfix median, postern median, median of paired ratios)}."""
    out = {}
    postern_by_run = {r["run"]: r for r in runs["postern"]}
    pairs = [(a, postern_by_run[a["run"]]) for a in runs["postfix"] if a["run"] in postern_by_run]
    for name, _unit, _hib in METRICS:
        pf = [r[name] for r in runs["postfix"]]  # medians over the successful runs
        pe = [r[name] for r in runs["postern"]]
        ratios = [ratio(b[name], a[name]) for a, b in pairs]
        ratios = [x for x in ratios if x is not None]
        out[name] = (statistics.median(pf) if pf else None,
                     statistics.median(pe) if pe else None,
                     statistics.median(ratios) if ratios else None)
    return out


def fmt(v, digits=1):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def scenario_table(sc, messages, runs):
    s = summarize(runs)
    loads = [r["load_before"] for k in ("postfix", "postern") for r in runs[k]] or [0]
    failed = len(runs.get("failed", []))
    lines = [f"### ({sc.key}) {sc.title}: {messages:,} messages, "
             f"{len(runs['postfix'])} Postfix and {len(runs['postern'])} Postern runs"
             + (f" ({failed} failed)" if failed else "")
             + f", load1 {min(loads):.1f}-{max(loads):.1f}", "",
             "| metric | Postfix | Postern | Postern/Postfix |", "|---|---|---|---|"]
    for name, unit, hib in METRICS:
        pf, pe, r = s[name]
        better = "higher is better" if hib else "lower is better"
        lines.append(f"| {name} ({unit}, {better}) | {fmt(pf)} | {fmt(pe)} | "
                     f"{fmt(r, 2) if r is not None else '-'} |")
    return "\n".join(lines)


def split_table(runs):
    """The CPU split of the last Postern and Postfix runs (seconds), with
    each program's process count and its time spent waiting for a CPU."""
    lines = []
    for kind in ("postfix", "postern"):
        if runs[kind]:
            r = runs[kind][-1]
            split, waits = r["cpu_split"], r.get("wait_split", {})
            lines.append(f"- {kind}, last run, CPU s (run-queue wait s) by program: " +
                         ", ".join(f"{n} {v:.2f} ({waits.get(n, 0):.1f})"
                                   for n, v in split.items() if v >= 0.01))
    return "\n".join(lines)


def run_scenario(sc, scale, nruns, workdir):
    messages = sc.scaled(scale)
    runs = {"postfix": [], "postern": []}
    for i in range(nruns):
        order = ("postfix", "postern") if i % 2 == 0 else ("postern", "postfix")
        for kind in order:
            log(f"({sc.key}) run {i + 1}/{nruns} {kind}: {messages} messages, "
                f"{sc.sessions} sessions, {sc.size} bytes, load1 {load1()}")
            try:
                r = run_once(kind, sc, messages, workdir)
            except Exception as e:   # one failed run must not lose the others
                log(f"   {kind}: run failed: {e}")
                runs.setdefault("failed", []).append({"mta": kind, "run": i + 1, "error": str(e)})
                continue
            r["run"] = i + 1
            log(f"   {kind}: accept {r['accept_rate']:.0f}/s, e2e {r['e2e_rate']:.0f}/s, "
                f"p50 {r['lat_p50_ms']:.1f} ms, p99 {r['lat_p99_ms']:.1f} ms, "
                f"CPU {r['cpu_per_1000']:.2f} s/1000, RSS {r['peak_rss_mib']:.1f} MiB, "
                f"PSS {r['peak_pss_mib']:.1f} MiB, procs {r['peak_procs']}")
            runs[kind].append(r)
    return messages, runs


def write_results(out, results, report):
    """Written after every scenario, so that a late failure loses nothing."""
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "results.md").write_text("\n\n".join(report) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float,
                    default=float(os.environ.get("BENCH_SCALE", DEFAULT_SCALE)))
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", DEFAULT_RUNS)))
    ap.add_argument("--scenarios", default=os.environ.get("BENCH_SCENARIOS", "abcdq"))
    ap.add_argument("--out", default=None, help="directory for results.json and results.md")
    ap.add_argument("--delete-between-runs", action="store_true",
                    help="remove each run's instance at once (see spent_roots)")
    args = ap.parse_args()
    global delete_between_runs
    delete_between_runs = args.delete_between_runs
    try:
        bench(args)
    finally:
        remove_spent_instances()


def bench(args):
    if os.geteuid() != 0:
        sys.exit("bench.py needs root: it runs a private Postfix instance")
    missing = mtamod.pi.missing_binaries()
    if missing:
        sys.exit("not built yet (run make all): " + ", ".join(missing))
    out = Path(args.out or f"/tmp/postern-bench.{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    uptime_start = Path("/proc/loadavg").read_text().strip()
    version = subprocess.run(["git", "-C", str(mtamod.REPO), "describe", "--always", "--dirty"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=30).stdout.decode().strip() or "unknown"
    postfix_version = subprocess.run(["postconf", "-d", "-h", "mail_version"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     timeout=30).stdout.decode().strip()
    log(f"Postern {version}, Postfix {postfix_version}; scale {args.scale}, {args.runs} runs, "
        f"scenarios {args.scenarios}, {os.cpu_count()} CPUs, loadavg {uptime_start}; "
        f"results in {out}")

    results, report = {}, []
    for key in args.scenarios:
        if key in SCENARIOS:
            sc = SCENARIOS[key]
            messages, runs = run_scenario(sc, args.scale, args.runs, out)
            results[key] = {"scenario": sc.__dict__, "messages": messages, "runs": runs,
                            "summary": summarize(runs)}
            table = scenario_table(sc, messages, runs) + "\n\n" + split_table(runs)
            report.append(table)
            print("\n" + table + "\n", flush=True)
        elif key == "q":
            import deferred
            res = deferred.run(args.scale, args.runs, log)
            results["q"] = res
            table = deferred.table(res)
            report.append(table)
            print("\n" + table + "\n", flush=True)
        else:
            sys.exit(f"unknown scenario {key!r}")
        write_results(out, results, report)

    elapsed = time.monotonic() - started
    footer = (f"Postern {version} against Postfix {postfix_version}; "
              f"scale {args.scale}, {args.runs} runs per MTA, {elapsed / 60:.1f} minutes; "
              f"loadavg at start {uptime_start}, at end "
              f"{Path('/proc/loadavg').read_text().strip()}")
    report.append(footer)
    write_results(out, results, report)
    log(footer)
    log(f"wrote {out / 'results.md'} and results.json")


if __name__ == "__main__":
    main()
