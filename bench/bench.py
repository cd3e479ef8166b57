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
  machine busy  share of the whole machine's CPU time busy over the same
                span (/proc/stat), and the CPU of everything but the MTA
                and its peer per 1,000 messages (the load generator, the
                kernel's threads, interrupts): what says whether a run was
                bound by CPU, and how much of it the MTA could not win

Each figure is reported for each MTA as the median of the runs, and as the
ratio Postern/Postfix: the median of the per-pair ratios (a pair is one
Postfix run and one Postern run next to each other).

Scenarios (message counts times --scale):
  a  20 sessions, 10,000 messages of 2 KB, local Maildir delivery
  b  the same, relayed to smtp-sink
  c  20 sessions, 2,000 messages of 100 KB, local Maildir delivery
  d  200 sessions, 10,000 messages of 2 KB, local Maildir delivery
  e  as a, every session STARTTLS, one message per session (load.py)
  f  as a, every message signed by one OpenDKIM milter (peers.py)
  g  20 sessions, 2 KB, delivered over LMTP into one Dovecot
  h  20 sessions, 2 KB, virtual_mailbox_maps in PostgreSQL (proxy:pgsql:),
     virtual(8) Maildir delivery
  q  100,000 deferred messages: qmgr start-up and postqueue -p (deferred.py)

    /usr/bin/python3 bench/bench.py [--scale S] [--runs N] [--scenarios abcdefghq]
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
import peers  # noqa: E402
from load import LatencySessions, Sink, run_smtp_source, run_tls_source  # noqa: E402
from postern_instance import free_port  # noqa: E402
from procstat import Sampler, cpu_seconds, machine_cpu  # noqa: E402

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
    peer: str = ""      # peers.PEERS: the shared peer of the scenario
    tls: bool = False   # the load is our TLS sessions, not smtp-source

    def scaled(self, scale):
        return max(self.sessions * 5, int(round(self.messages * scale)))


SCENARIOS = {
    "a": Scenario("a", "20 sessions, 2 KB, local Maildir", 20, 10000, 2048, False),
    "b": Scenario("b", "20 sessions, 2 KB, relayed to smtp-sink", 20, 10000, 2048, True),
    "c": Scenario("c", "20 sessions, 100 KB, local Maildir", 20, 2000, 102400, False),
    "d": Scenario("d", "200 sessions, 2 KB, local Maildir", 200, 10000, 2048, False),
    "e": Scenario("e", "20 sessions, 2 KB, STARTTLS, 1 message per session, local Maildir",
                  20, 10000, 2048, False, peer="tls", tls=True),
    "f": Scenario("f", "20 sessions, 2 KB, OpenDKIM signing, local Maildir", 20, 10000, 2048,
                  False, peer="dkim"),
    "g": Scenario("g", "20 sessions, 2 KB, LMTP into Dovecot", 20, 10000, 2048, False,
                  peer="lmtp"),
    "h": Scenario("h", "20 sessions, 2 KB, virtual_mailbox_maps in PostgreSQL", 20, 10000,
                  2048, False, peer="pgsql"),
}
DEFAULT_SCENARIOS = "abcdefghq"

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


# Reported where a scenario has them: (e)'s TLS figures, the timed
# sessions' share of the messages (smtp-source scenarios).
EXTRA_METRICS = [
    ("session_setup_p50_ms", "ms, connect to ready for MAIL", False),
    ("tls_resumed_share", "share of TLS sessions resumed", True),
    ("client_cpu_per_1000", "s, the TLS client's CPU", False),
    ("timed_share", "x, timed sessions' share of messages / of sessions", False),
    ("session_cycle_ms", "ms, every session's mean time per message: sessions / accept rate "
     "(Little's law), the timed sessions and the rest alike", False),
    ("peer_cpu_per_1000", "s, the shared peer's CPU per 1,000 messages", False),
    ("source_cpu_per_1000", "s, smtp-source's CPU per 1,000 of its messages", False),
    ("source_busy_pct", "%, smtp-source's CPU time over its run: one process, "
     "near 100 it is what bounds the rate", False),
    ("machine_busy_pct", "%, the machine's CPU time busy during the run", False),
    ("others_cpu_per_1000", "s, the CPU of everything but the MTA and the peer "
     "(the load generator, the kernel's threads, interrupts) per 1,000 messages", False),
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


def smtp_source_load(m, sc, messages, sender, rcpt):
    """smtp-source for the bulk, a tenth of the sessions timed by us.
    Returns (messages sent, accept latencies, extra figures)."""
    k = latency_sessions_for(sc.sessions)
    src_sessions = sc.sessions - k
    src_messages = max(src_sessions, int(round(messages * src_sessions / sc.sessions)))
    lat = LatencySessions(m.port, k, sc.size, sender, rcpt)
    t0 = time.monotonic()
    lat.start()
    rc, out, src_cpu = run_smtp_source(m.port, src_sessions, src_messages, sc.size,
                                       sender, rcpt, timeout=max(600, messages))
    lat.stop()
    if rc != 0:
        raise AssertionError(f"{m.name}: smtp-source exited {rc}: {out[-2000:]}\n"
                             f"{m.log_tail()}")
    if lat.errors:
        raise AssertionError(f"{m.name}: {lat.errors[:3]}\n{m.log_tail()}")
    total = src_messages + lat.sent
    # The timed sessions' share of the messages against their share of the
    # sessions: above 1 when the MTA serves them before smtp-source's.
    return total, lat.latencies, {"timed_share": lat.sent / total * sc.sessions / k,
                                  "source_cpu_per_1000": src_cpu / src_messages * 1000,
                                  "source_busy_pct": 100 * src_cpu / max(1e-9, time.monotonic() - t0)}


def tls_load(m, sc, messages, sender, rcpt):
    """Every session ours, over STARTTLS (load.run_tls_source)."""
    r = run_tls_source(m.port, sc.sessions, messages, sc.size, sender, rcpt,
                       timeout=max(600, messages))
    if r["errors"]:
        raise AssertionError(f"{m.name}: {r['errors'][:3]}\n{m.log_tail()}")
    return r["sent"], r["latencies"], {
        "tls_connections": r["connections"],
        "tls_resumed_share": r["resumed"] / max(1, r["connections"]),
        "session_setup_p50_ms": percentile(r["setups"], 50) * 1000,
        "client_cpu_per_1000": r["cpu"] / max(1, r["sent"]) * 1000,
    }


def peer_cpu(peer):
    """CPU seconds of the scenario's shared peer so far (0 without one)."""
    pid = peer.pid()
    return cpu_seconds(pid) if pid else 0.0


def run_once(kind, sc, messages, workdir, setup, peer):
    """One measured run of one MTA on one scenario; returns its figures."""
    sink = Sink(workdir) if sc.relay else None
    try:
        m = mtamod.make(kind, free_port(), sink.port if sink else None, sessions=sc.sessions,
                        setup=setup)
        try:
            m.start()
            m.qmgr_pid()
            # The previous run's write-back (its Maildir and queue files)
            # must not be charged to this one's fsyncs.
            os.sync()
            time.sleep(1.0)   # let the start-up settle (its CPU is not counted)
            master = m.master_pid()
            rcpt = mtamod.RELAY_RCPT if sc.relay else setup.rcpt
            load_before = load1()
            cpu0, peer0 = cpu_seconds(master), peer_cpu(peer)
            busy0, all0 = machine_cpu()
            with Sampler(master) as sampler:
                t0 = time.monotonic()
                total, latencies, extra = (tls_load if sc.tls else smtp_source_load)(
                    m, sc, messages, setup.sender, rcpt)
                t_accept = time.monotonic()
                t_done, got = wait_done(m, sink, total, t_accept + max(300, messages * 0.1))
                cpu1, peer1 = cpu_seconds(master), peer_cpu(peer)
                busy1, all1 = machine_cpu()
            split, waits = sampler.cpu_split(), sampler.wait_split()
            if peer.pid():
                extra["peer_cpu_per_1000"] = (peer1 - peer0) / total * 1000
            # What the machine had left: a run whose machine is busy
            # throughout is bound by CPU, and the others' share of it
            # (the load generator above all) is what the MTA cannot win.
            extra["machine_busy_pct"] = 100 * (busy1 - busy0) / max(1e-9, all1 - all0)
            extra["others_cpu_per_1000"] = ((busy1 - busy0) - (cpu1 - cpu0)
                                            - (peer1 - peer0)) / total * 1000
            # Little's law over every session, timed or not: the mean time
            # a session took per message, whoever the MTA served first.
            extra["session_cycle_ms"] = sc.sessions * (t_accept - t0) / total * 1000
            return {
                **extra,
                "mta": kind,
                "messages": total,
                "delivered": got,
                "accept_rate": total / (t_accept - t0),
                "e2e_rate": total / (t_done - t0),
                "lat_p50_ms": percentile(latencies, 50) * 1000,
                "lat_p99_ms": percentile(latencies, 99) * 1000,
                "lat_samples": len(latencies),
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
    everywhere = [m for m in EXTRA_METRICS
                  if all(m[0] in r for k in ("postfix", "postern") for r in runs[k])]
    for name, _unit, _hib in METRICS + everywhere:
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
    for name, unit, hib in METRICS + EXTRA_METRICS:
        if name not in s:
            continue
        pf, pe, r = s[name]
        better = "higher is better" if hib else "lower is better"
        if name in dict((m[0], 1) for m in EXTRA_METRICS):
            better = "informational"
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
    peer = peers.started(sc.peer)
    try:
        n = 0
        for i in range(nruns):
            order = ("postfix", "postern") if i % 2 == 0 else ("postern", "postfix")
            for kind in order:
                run_pair(sc, messages, nruns, workdir, runs, i, kind, peer.for_run(kind, n),
                         peer)
                n += 1
    finally:
        peer.close()
    return messages, runs


def run_pair(sc, messages, nruns, workdir, runs, i, kind, setup, peer):
    """One run of one MTA, its figures appended to runs[kind] (a failed
    run to runs["failed"]: it must not lose the others)."""
    log(f"({sc.key}) run {i + 1}/{nruns} {kind}: {messages} messages, "
        f"{sc.sessions} sessions, {sc.size} bytes, load1 {load1()}")
    try:
        r = run_once(kind, sc, messages, workdir, setup, peer)
    except Exception as e:
        log(f"   {kind}: run failed: {e}")
        runs.setdefault("failed", []).append({"mta": kind, "run": i + 1, "error": str(e)})
        return
    r["run"] = i + 1
    peer_cpu_text = (f", {sc.peer} CPU {r['peer_cpu_per_1000']:.2f} s/1000"
                     if "peer_cpu_per_1000" in r else "")
    share = f", timed sessions' share {r['timed_share']:.2f}x" if "timed_share" in r else ""
    tls = (f", TLS resumed {r['tls_resumed_share']:.0%}, session set-up p50 "
           f"{r['session_setup_p50_ms']:.1f} ms, client CPU {r['client_cpu_per_1000']:.2f} s/1000"
           if "tls_connections" in r else "")
    src = (f", smtp-source busy {r['source_busy_pct']:.0f}%" if "source_busy_pct" in r else "")
    busy = src + (f", machine busy {r['machine_busy_pct']:.0f}%, others' CPU "
            f"{r['others_cpu_per_1000']:.2f} s/1000" if "machine_busy_pct" in r else "")
    log(f"   {kind}: accept {r['accept_rate']:.0f}/s, e2e {r['e2e_rate']:.0f}/s, "
        f"p50 {r['lat_p50_ms']:.1f} ms, p99 {r['lat_p99_ms']:.1f} ms, "
        f"CPU {r['cpu_per_1000']:.2f} s/1000, RSS {r['peak_rss_mib']:.1f} MiB, "
        f"PSS {r['peak_pss_mib']:.1f} MiB, procs {r['peak_procs']}{share}{peer_cpu_text}{tls}{busy}")
    runs[kind].append(r)


def summary_table(results):
    """One row per scenario: the Postern/Postfix ratios (issue 23's table)."""
    lines = ["| scenario | e2e msg/s | accept msg/s | p50 | p99 | session cycle | CPU/msg "
             "| peak RSS |",
             "|---|---|---|---|---|---|---|---|"]
    for key, res in results.items():
        if key not in SCENARIOS:
            continue
        s = res["summary"]
        cells = []
        for name in ("e2e_rate", "accept_rate", "lat_p50_ms", "lat_p99_ms", "session_cycle_ms",
                     "cpu_per_1000", "peak_rss_mib"):
            pf, pe, r = s.get(name, (None, None, None))
            cells.append("-" if r is None else
                         f"**{r:.2f}x** ({fmt(pe)} vs {fmt(pf)})" if name == "e2e_rate"
                         else f"{r:.2f}")
        lines.append(f"| ({key}) {SCENARIOS[key].title} | " + " | ".join(cells) + " |")
    return "Postern/Postfix, medians of the paired ratios (e2e: Postern vs Postfix msg/s)\n\n" \
        + "\n".join(lines)


def write_results(out, results, report):
    """Written after every scenario, so that a late failure loses nothing."""
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "results.md").write_text("\n\n".join(report) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float,
                    default=float(os.environ.get("BENCH_SCALE", DEFAULT_SCALE)))
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", DEFAULT_RUNS)))
    ap.add_argument("--scenarios", default=os.environ.get("BENCH_SCENARIOS", DEFAULT_SCENARIOS))
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

    if any(k in SCENARIOS for k in results):
        table = summary_table(results)
        report.append(table)
        print("\n" + table + "\n", flush=True)
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
