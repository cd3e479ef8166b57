"""Helpers for the reliability tests (test_reliability_*.py): a load of
uniquely tagged messages sent over several SMTP connections that survive
the connections being killed, a killer of random daemons, and the
accounting that checks docs/DESIGN.md's durability promise: every message that
got a 250 is delivered, at worst twice.

Everything here is bounded in time; threads stop at a deadline or when
told to, and nothing here ever waits without one.
"""

import collections
import os
import random
import re
import signal
import smtplib
import threading
import time
from pathlib import Path

from postern_instance import HELO, SENDER, QUEUED_RE, crlf, is_alive, rfc2822_now

TAG_RE = re.compile(rb"^X-Test-Id: (\S+)$", re.M)

# Daemons a crash test may kill, when the instance runs them.
VICTIMS = ("smtpd", "cleanup", "qmgr", "local", "bounce", "pickup", "remote")

# Settings that keep a test of faults short: deferred mail is retried
# within seconds, and a daemon killed soon after its start (which master
# rightly takes for a bad start) is throttled for seconds, not a minute.
FAST_RETRY = [
    "minimal_backoff_time = 1s",
    "maximal_backoff_time = 2s",
    "queue_run_delay = 1s",
    "service_throttle_time = 2s",
]


def tagged_message(tag, size=0):
    """A complete message carrying tag in X-Test-Id (LF text)."""
    body = "tag " + tag + "\n" + ("x" * 70 + "\n") * (size // 71)
    return (f"From: {SENDER}\nTo: undisclosed-recipients:;\nSubject: {tag}\n"
            f"Date: {rfc2822_now()}\nMessage-ID: <{tag}@{HELO}>\nX-Test-Id: {tag}\n\n{body}")


def mailbox_for(tag, users):
    return users[hash(tag) % len(users)]


class TaggedLoad:
    """conns threads, each sending messages over one SMTP connection at a
    time (reconnecting after any failure), until `total` messages have been
    tried or stop() is called or the deadline passes.

    .tried: tags whose transaction was started; .acked: tag -> queue id of
    those that got "250 ... queued as ID"; .failures: Counter of why a
    transaction did not get a 250."""

    def __init__(self, port, total, conns=4, users=("u0", "u1", "u2", "u3", "u4"),
                 prefix="msg", deadline=60.0, timeout=15.0, size=0):
        self.port, self.total, self.conns = port, total, conns
        self.users, self.prefix, self.timeout, self.size = users, prefix, timeout, size
        self.deadline = time.monotonic() + deadline
        self.lock = threading.Lock()
        self.next = 0
        self.tried = []
        self.acked = {}
        self.failures = collections.Counter()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(conns)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()

    def join(self, timeout):
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, end - time.monotonic()))
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, f"{len(alive)} sender threads still running after {timeout}s"

    def done(self):
        return all(not t.is_alive() for t in self.threads)

    def _take(self):
        with self.lock:
            if self.next >= self.total or self.stopping.is_set() or \
                    time.monotonic() >= self.deadline:
                return None
            self.next += 1
            tag = f"{self.prefix}-{self.next:05d}"
            self.tried.append(tag)
            return tag

    def _connect(self):
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname=HELO, timeout=self.timeout)
        code, _ = s.ehlo(HELO)
        if code != 250:
            raise smtplib.SMTPResponseException(code, b"EHLO refused")
        return s

    def _send_one(self, s, tag):
        rcpt = mailbox_for(tag, self.users) + "@localhost"
        code, resp = s.mail(SENDER)
        if code != 250:
            return f"MAIL {code}"
        code, resp = s.rcpt(rcpt)
        if code != 250:
            s.rset()
            return f"RCPT {code}"
        code, resp = s.data(crlf(tagged_message(tag, self.size)))
        if code != 250:
            return f"DATA {code} {resp[:40]!r}"
        m = QUEUED_RE.match(resp.decode("utf-8", "replace"))
        if not m:
            return f"DATA 250 without queue id {resp!r}"
        with self.lock:
            self.acked[tag] = m["id"]
        return None

    def _run(self, index):
        s = None
        while True:
            tag = self._take()
            if tag is None:
                break
            try:
                if s is None:
                    s = self._connect()
                why = self._send_one(s, tag)
            except (OSError, smtplib.SMTPException) as e:
                why = type(e).__name__
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
                s = None
                time.sleep(0.05)   # the daemon may be restarting
            if why is not None:
                with self.lock:
                    self.failures[" ".join(why.split()[:2])] += 1
        if s is not None:
            try:
                s.quit()
            except (OSError, smtplib.SMTPException):
                s.close()


MAILDIR_NAME_RE = re.compile(r"^(\d+)\.M(\d+)P(\d+)")


def scan_deliveries(mail_root):
    """One pass over every mail_root/USER/new/ file: {tag: [(wall clock
    time, pid of the delivering process), ...] oldest first} from the
    X-Test-Id header and the Maildir file name ("SECONDS.MMICROSECONDSPPID
    _N.host"), and the number of files without a tag."""
    out = collections.defaultdict(list)
    untagged = 0
    for f in Path(mail_root).glob("*/new/*"):
        try:
            with open(f, "rb") as fh:
                head = fh.read(8192)
        except FileNotFoundError:
            continue
        m = TAG_RE.search(head.split(b"\n\n", 1)[0])
        if not m:
            untagged += 1
            continue
        n = MAILDIR_NAME_RE.match(f.name)
        when = (int(n[1]) + int(n[2]) / 1e6, int(n[3])) if n else (0.0, 0)
        out[m[1].decode()].append(when)
    for copies in out.values():
        copies.sort()
    return out, untagged


def delivered_tags(mail_root):
    """Counter of delivered X-Test-Id tags, and the number of untagged
    files."""
    deliveries, untagged = scan_deliveries(mail_root)
    return collections.Counter({t: len(c) for t, c in deliveries.items()}), untagged


def unexplained_duplicates(deliveries, kill_log):
    """The duplicated tags of deliveries (scan_deliveries) that no kill
    explains. A copy is explained when the process that delivered the
    first copy was killed (after its fsync, before its answer reached
    qmgr), or when qmgr, or the whole instance, was killed after the first
    copy was written (before the done mark)."""
    killed_pids = {pid for _, name, pid in kill_log}
    markers = [t for t, name, _ in kill_log if name in ("qmgr", "all")]
    out = {}
    for tag, copies in deliveries.items():
        if len(copies) < 2:
            continue
        first_time, first_pid = copies[0]
        if first_pid in killed_pids:
            continue
        # Maildir names carry the clock we read too; allow for rounding.
        if any(t >= first_time - 0.001 for t in markers):
            continue
        out[tag] = copies
    return out


def process_age(pid):
    """Seconds since pid started, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


class Killer:
    """A thread that, every interval (random in [lo, hi] seconds), SIGKILLs
    one random process of a random daemon of the instance. Only processes
    older than min_age are chosen: master rightly throttles a service whose
    processes die right after they start, and the point here is crashes of
    working daemons."""

    def __init__(self, instance, victims=VICTIMS, lo=0.2, hi=0.5, min_age=1.1, seed=None):
        self.instance, self.victims = instance, victims
        self.lo, self.hi, self.min_age = lo, hi, min_age
        self.rng = random.Random(seed)
        self.kills = collections.Counter()
        self.log = []    # (wall clock time, daemon, pid) of every kill
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "killer thread did not stop"

    def candidates(self):
        out = []
        for name in self.victims:
            for pid in self.instance.pids(name):
                age = process_age(pid)
                if age is not None and age >= self.min_age:
                    out.append((name, pid))
        return out

    def _run(self):
        while not self.stopping.wait(self.rng.uniform(self.lo, self.hi)):
            cands = self.candidates()
            if not cands:
                continue
            by_name = collections.defaultdict(list)
            for name, pid in cands:
                by_name[name].append(pid)
            name = self.rng.choice(sorted(by_name))
            pid = self.rng.choice(by_name[name])
            try:
                os.kill(pid, signal.SIGKILL)
                self.kills[name] += 1
                self.log.append((time.time(), name, pid))
            except ProcessLookupError:
                pass


def kill_instance_now(instance, kill_log=None):
    """SIGKILL master and every process of the instance, all at once (as
    close to a power cut as processes can get), and wait until they are
    gone. When kill_log is given, (time, "all", 0) is appended to it, with
    the time at which the last process was gone: a delivery that started
    before then may have been interrupted."""
    pids = instance.live_pids()
    # Stop them all first so that none reacts to another's death, then kill.
    for pid in pids:
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 10
    while time.monotonic() < end:
        left = [p for p in instance.live_pids() if is_alive(p)]
        if not left:
            if kill_log is not None:
                kill_log.append((time.time(), "all", 0))
            return len(pids)
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"processes survived SIGKILL: {instance.describe_live()}")


def queue_state(instance):
    """{queue: [names]} of incoming, active, deferred (recursively) and
    corrupt, with the mode of each incoming file."""
    out = {}
    for sub in ("incoming", "active", "deferred", "corrupt", "hold"):
        d = instance.queue / sub
        names = []
        if d.is_dir():
            for dirpath, _dirs, files in os.walk(d):
                for f in files:
                    p = Path(dirpath) / f
                    try:
                        mode = p.stat().st_mode & 0o777
                    except FileNotFoundError:
                        continue
                    names.append((f, oct(mode)))
        out[sub] = names
    return out


def complete_queue_files(instance):
    """Queue files that are still to be delivered: complete (mode 0700)
    files in incoming, and everything in active and deferred."""
    st = queue_state(instance)
    return ([n for n, m in st["incoming"] if m == "0o700"] + [n for n, _ in st["active"]] +
            [n for n, _ in st["deferred"]])


def wait_all_delivered(instance, tags, timeout):
    """Wait until nothing deliverable is left in the queue and every tag in
    tags has been delivered at least once (the Maildirs are read only once
    the queue is empty). Returns scan_deliveries' result. Raises
    AssertionError naming what is missing."""
    end = time.monotonic() + timeout
    missing, pending = list(tags), []
    while True:
        pending = complete_queue_files(instance)
        if not pending:
            deliveries, untagged = scan_deliveries(instance.mail)
            missing = [t for t in tags if not deliveries.get(t)]
            if not missing:
                return deliveries, untagged
        if time.monotonic() >= end:
            raise AssertionError(
                f"after {timeout}s: queue still holds {pending[:10]}; acknowledged "
                f"messages not delivered (last look): {len(missing)}, e.g. {missing[:5]}")
        time.sleep(0.3)


def report(title, **counts):
    """Print a one-line summary that pytest -s (or a failure) shows."""
    print(f"{title}: " + ", ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
