"""Scenario q of bench.py: a queue of 100,000 deferred messages (times the
scale). Measures, for Postfix and Postern alike, what a big backlog costs
at rest: how long qmgr takes to start, how much CPU and memory it needs,
and how long `postqueue -p` takes to list the queue.

Filling the queues. Submitting 100,000 messages through SMTP and letting
each fail would take many minutes per MTA, so each queue is filled from a
real template: one message is sent through SMTP to bench@relay.example
with relayhost [127.0.0.1]:9 (a closed port), so each MTA's own smtpd,
cleanup, qmgr and SMTP client write a real deferred queue file and a real
defer log (the reason `postqueue -p` prints). The file and its log are
then copied N-1 times under valid queue ids, computed as each MTA computes
them from the copy's inode:
  Postern  6 base-62 digits of the arrival seconds and 4 of the
           microseconds (kept from the template, matching its T record),
           then the inode in base 62; deferred/LAST-CHARACTER/ID, defer/ID.
  Postfix  short ids: 5 hex digits of microseconds (varied per copy, so
           the files spread over the 16 hash directories as real ones
           do), then the inode in hex; deferred/FIRST-CHARACTER/ID and
           defer/FIRST-CHARACTER/ID. `postsuper -s` runs afterwards as a
           check: it renames any file whose name does not match its inode.
Every copy's mtime (the next retry time for both MTAs) is an hour ahead, so
neither qmgr tries to deliver any of them: the measurement is the cost of
the backlog itself, not of 100,000 delivery attempts.

Measured per run (runs alternate between the MTAs, each from a stopped
instance with the filled queue):
  startup_s      from qmgr's birth (its /proc start time) to its last use
                 of CPU before a full second without any (the queue scan is
                 over); clock-tick (10 ms) precision. Watching starts when
                 the SMTP port opens: work done before that shows as ending
                 then (an upper bound)
  probe_s        from qmgr's birth until a message sent as soon as the
                 SMTP port opens is in the Maildir: how long the backlog
                 delays new mail
  qmgr_cpu_s     qmgr's CPU seconds at that point
  qmgr_rss_mib   qmgr's VmRSS then (VmHWM, the peak, also recorded)
  postqueue_s    wall time of `postqueue -p > /dev/null`, whose summary
                 line is checked to count every message
"""

import os
import re
import shutil
import smtplib
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mta as mtamod  # noqa: E402
from postern_instance import HELO, free_port, wait_until  # noqa: E402
from procstat import started_monotonic, status_kib, wait_quiet  # noqa: E402
from queue_fixture import base62  # noqa: E402

BASE_MESSAGES = 100000
AHEAD = 3600          # seconds: the copies' next retry time
REQUESTS_RE = re.compile(rb"in (\d+) Requests?\.")

METRICS = [
    ("startup_s", "s"), ("probe_s", "s"), ("qmgr_cpu_s", "s"),
    ("qmgr_rss_mib", "MiB"), ("qmgr_hwm_mib", "MiB"), ("postqueue_s", "s"),
]


def send_one(port, rcpt):
    with smtplib.SMTP("127.0.0.1", port, local_hostname=HELO, timeout=60) as s:
        s.sendmail(mtamod.SENDER, [rcpt],
                   f"From: <{mtamod.SENDER}>\r\nTo: <{rcpt}>\r\nSubject: q\r\n\r\n"
                   + "x" * 74 + "\r\n")


def files_under(path):
    out = []
    for dirpath, _dirs, files in os.walk(path):
        out.extend(Path(dirpath) / f for f in files)
    return out


def make_template(m):
    """Start m, get one real deferred message and its defer log, stop m.
    Returns (queue file path, defer log path)."""
    m.start()
    send_one(m.port, mtamod.RELAY_RCPT)
    wait_until(lambda: m.deferred() == 1 and files_under(m.queue / "defer"), 120,
               interval=0.1, what=f"{m.name}: the template message to be deferred")
    time.sleep(0.5)
    m.stop()
    (qf,) = files_under(m.queue / "deferred")
    (log,) = files_under(m.queue / "defer")
    return qf, log


def clone(template, log_template, count, place):
    """Write count copies of the template queue file and its defer log.
    place(i, inode) -> (queue file path, log path) names each copy from its
    inode. Copies are written to a temporary name in the template's
    directory, then renamed (same file system, same inode)."""
    data, log_data = template.read_bytes(), log_template.read_bytes()
    st = template.stat()
    ahead = time.time() + AHEAD
    tmpdir = template.parent.parent
    made_dirs = set()
    for i in range(count):
        tmp = tmpdir / f"bench-clone.{i}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, st.st_mode & 0o777)
        try:
            os.write(fd, data)
            os.fchown(fd, st.st_uid, st.st_gid)
            ino = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        qpath, lpath = place(i, ino)
        for d in (qpath.parent, lpath.parent):
            if d not in made_dirs:
                d.mkdir(parents=True, exist_ok=True)
                shutil.copystat(template.parent, d)
                os.chown(d, template.parent.stat().st_uid, template.parent.stat().st_gid)
                made_dirs.add(d)
        os.rename(tmp, qpath)
        os.utime(qpath, (ahead, ahead))
        lfd = os.open(lpath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(lfd, log_data)
            os.fchown(lfd, st.st_uid, st.st_gid)
        finally:
            os.close(lfd)
    os.utime(template, (ahead, ahead))


def fill_postern(m, total):
    qf, log = make_template(m)
    prefix = qf.name[:10]    # base-62 seconds (6) and microseconds (4)

    def place(_i, ino):
        qid = prefix + base62(ino)
        return m.queue / "deferred" / qid[-1] / qid, m.queue / "defer" / qid

    clone(qf, log, total - 1, place)


def fill_postfix(m, total):
    qf, log = make_template(m)

    def place(i, ino):
        qid = f"{(i * 7919) % 1000000:05X}{ino:X}"
        return (m.queue / "deferred" / qid[0] / qid, m.queue / "defer" / qid[0] / qid)

    clone(qf, log, total - 1, place)
    rc, out = m.postsuper("-s")
    if rc != 0 or "Renamed" in out:
        raise AssertionError(f"postsuper -s after the fill exited {rc}: {out[-2000:]}")


def measure(m, total):
    """One start of m over its filled queue; returns the figures."""
    before = m.delivered()
    # As bench.py before each run: the fill's write-back (tens of MB of
    # copies) is not this start's. Without it Postern's first run paid for
    # all of it: the probe is the first delivery into the Maildir, whose
    # creation syncs the file system (fsync_new_dir, docs/DESIGN.md).
    os.sync()
    m.start()
    qmgr = m.qmgr_pid()
    born = started_monotonic(qmgr)
    probe = {}

    def send_probe():
        try:
            send_one(m.port, mtamod.LOCAL_RCPT)
            wait_until(lambda: m.delivered() > before, 300, interval=0.02,
                       what=f"{m.name}: the probe message")
            probe["at"] = time.monotonic()
        except Exception as e:   # reported below
            probe["error"] = e

    sender = threading.Thread(target=send_probe, daemon=True)
    sender.start()
    # Watch qmgr's CPU from now on, while the probe goes through.
    quiet = wait_quiet(qmgr, quiet_for=1.0, timeout=600)
    sender.join(310)
    if quiet is None or born is None:
        raise AssertionError(f"{m.name}: qmgr exited during start-up\n{m.log_tail()}")
    if "at" not in probe:
        raise AssertionError(f"{m.name}: probe: {probe.get('error')}\n{m.log_tail()}")
    startup, probe_s = max(0.0, quiet[0] - born), probe["at"] - born
    rss, hwm = status_kib(qmgr, "VmRSS"), status_kib(qmgr, "VmHWM")
    t1 = time.monotonic()
    p = subprocess.run([str(a) for a in m.postqueue_argv()], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600,
                       env=m.env())
    pq = time.monotonic() - t1
    tail = p.stdout[-200:]
    found = REQUESTS_RE.search(tail)
    listed = int(found.group(1)) if found else None
    if p.returncode != 0 or listed is None or listed < total:
        raise AssertionError(f"{m.name}: postqueue -p exited {p.returncode}, listed {listed} "
                             f"of {total}: {tail!r} {p.stderr[-500:]!r}")
    m.stop()
    return {"mta": m.name, "startup_s": startup, "probe_s": probe_s, "qmgr_cpu_s": quiet[1],
            "qmgr_rss_mib": rss / 1024, "qmgr_hwm_mib": hwm / 1024, "postqueue_s": pq,
            "listed": listed, "load1": round(os.getloadavg()[0], 2)}


def run(scale, nruns, log):
    total = max(1000, int(round(BASE_MESSAGES * scale)))
    mtas = {"postfix": mtamod.make("postfix", free_port()),
            "postern": mtamod.make("postern", free_port())}
    runs = {"postfix": [], "postern": []}
    try:
        for kind, fill in (("postfix", fill_postfix), ("postern", fill_postern)):
            t = time.monotonic()
            log(f"(q) filling the {kind} queue with {total} deferred messages")
            fill(mtas[kind], total)
            log(f"   {kind}: {mtas[kind].deferred()} deferred files "
                f"in {time.monotonic() - t:.0f} s")
            if mtas[kind].deferred() != total:
                raise AssertionError(f"{kind}: {mtas[kind].deferred()} deferred, not {total}")
        for i in range(nruns):
            order = ("postfix", "postern") if i % 2 == 0 else ("postern", "postfix")
            for kind in order:
                r = measure(mtas[kind], total)
                log(f"(q) run {i + 1}/{nruns} {kind}: start-up {r['startup_s']:.2f} s, "
                    f"probe {r['probe_s']:.2f} s, qmgr CPU {r['qmgr_cpu_s']:.2f} s, "
                    f"RSS {r['qmgr_rss_mib']:.1f} MiB (peak {r['qmgr_hwm_mib']:.1f}), "
                    f"postqueue -p {r['postqueue_s']:.2f} s, load1 {r['load1']}")
                runs[kind].append(r)
    finally:
        for kind, m in mtas.items():
            t = time.monotonic()
            m.cleanup()
            log(f"   {kind}: instance removed in {time.monotonic() - t:.0f} s")
    return {"messages": total, "runs": runs}


def table(res):
    runs = res["runs"]
    loads = [r["load1"] for k in runs for r in runs[k]]
    lines = [f"### (q) {res['messages']:,} deferred messages: {len(runs['postern'])} runs each, "
             f"load1 {min(loads):.1f}-{max(loads):.1f}", "",
             "| metric (lower is better) | Postfix | Postern | Postern/Postfix |",
             "|---|---|---|---|"]
    for name, unit in METRICS:
        pf = statistics.median(r[name] for r in runs["postfix"])
        pe = statistics.median(r[name] for r in runs["postern"])
        ratios = [b[name] / a[name] for a, b in zip(runs["postfix"], runs["postern"]) if a[name]]
        r = f"{statistics.median(ratios):.2f}" if ratios else "-"
        lines.append(f"| {name} ({unit}) | {pf:.2f} | {pe:.2f} | {r} |")
    return "\n".join(lines)
