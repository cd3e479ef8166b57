"""Helpers for the reliability tests (test_reliability_*.py): a load of
uniquely tagged messages sent over several SMTP connections that survive
the connections being killed, a killer of random daemons, and the
accounting that checks docs/DESIGN.md's durability promise: every message that
got a 250 is delivered, at worst twice. Deliveries are read from stores
(MaildirStore: the instance's Maildirs or Dovecot's; SinkStore: a recording
SMTP server), so one load may go to several destinations at once.

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

# Daemons a crash test may kill, when the instance runs them (lmtp is
# remote under master.cf's service name).
VICTIMS = ("smtpd", "cleanup", "qmgr", "local", "bounce", "pickup", "remote", "lmtp")

# Settings that keep a test of faults short: deferred mail is retried
# within seconds, and a daemon killed soon after its start (which master
# rightly takes for a bad start) is throttled for seconds, not a minute.
FAST_RETRY = [
    "minimal_backoff_time = 1s",
    "maximal_backoff_time = 2s",
    "queue_run_delay = 1s",
    "service_throttle_time = 2s",
]


def tagged_message(tag, size=0, headers=()):
    """A complete message carrying tag in X-Test-Id (LF text), with the
    extra header lines given."""
    body = "tag " + tag + "\n" + ("x" * 70 + "\n") * (size // 71)
    extra = "".join(h + "\n" for h in headers)
    return (f"From: {SENDER}\nTo: undisclosed-recipients:;\nSubject: {tag}\n"
            f"Date: {rfc2822_now()}\nMessage-ID: <{tag}@{HELO}>\nX-Test-Id: {tag}\n"
            f"{extra}\n{body}")


def mailbox_for(tag, users):
    return users[hash(tag) % len(users)]


class TaggedLoad:
    """conns threads, each sending messages over one SMTP connection at a
    time (reconnecting after any failure), until `total` messages have been
    tried or stop() is called or the deadline passes. Each message goes to
    rcpt_for(tag) (default: one of users at domain) and carries the
    header lines in headers. With fresh_after_refusal, a refused MAIL ends
    the connection and the next message gets a new one (a session whose
    milters failed answers MAIL with milter_default_action from then on).

    .tried: tags whose transaction was started; .acked: tag -> queue id of
    those that got "250 ... queued as ID"; .failures: Counter of why a
    transaction did not get a 250."""

    def __init__(self, port, total, conns=4, users=("u0", "u1", "u2", "u3", "u4"),
                 prefix="msg", deadline=60.0, timeout=15.0, size=0, domain="localhost",
                 rcpt_for=None, headers=(), fresh_after_refusal=False):
        self.port, self.total, self.conns, self.domain = port, total, conns, domain
        self.users, self.prefix, self.timeout, self.size = users, prefix, timeout, size
        self.rcpt_for = rcpt_for or (lambda tag: mailbox_for(tag, self.users) + "@" + self.domain)
        self.headers = tuple(headers)
        self.fresh_after_refusal = fresh_after_refusal
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
        rcpt = self.rcpt_for(tag)
        code, resp = s.mail(SENDER)
        if code != 250:
            return f"MAIL {code}"
        code, resp = s.rcpt(rcpt)
        if code != 250:
            s.rset()
            return f"RCPT {code}"
        code, resp = s.data(crlf(tagged_message(tag, self.size, self.headers)))
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
                if why and why.startswith("MAIL") and self.fresh_after_refusal:
                    s.close()
                    s = None
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


def message_tag(data):
    """The X-Test-Id of a message (bytes, LF or CRLF), or None."""
    head = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    m = TAG_RE.search(head)
    return m[1].decode() if m else None


def scan_deliveries(mail_root, pattern="*/new/*", prefix=None, check=None):
    """One pass over the Maildir files under mail_root that pattern
    matches: {tag: [(wall clock time, pid of the delivering process,
    check(head) or None), ...] oldest first} from the X-Test-Id header and
    the Maildir file name ("SECONDS.MMICROSECONDSPPID..."; Postern's local
    and Dovecot name files alike), and the number of files without a tag.
    With prefix, files whose tag does not start with it are left out (a
    Dovecot shared with other tests)."""
    out = collections.defaultdict(list)
    untagged = 0
    for f in Path(mail_root).glob(pattern):
        try:
            with open(f, "rb") as fh:
                head = fh.read(8192)
        except FileNotFoundError:
            continue   # Dovecot moved it from new/ to cur/ meanwhile
        tag = message_tag(head)
        if tag is None:
            untagged += prefix is None
            continue
        if prefix is not None and not tag.startswith(prefix):
            continue
        n = MAILDIR_NAME_RE.match(f.name)
        when = (int(n[1]) + int(n[2]) / 1e6, int(n[3])) if n else (0.0, 0)
        out[tag].append(when + (check(head) if check else None,))
    for copies in out.values():
        copies.sort()
    return out, untagged


def delivered_tags(mail_root):
    """Counter of delivered X-Test-Id tags, and the number of untagged
    files."""
    deliveries, untagged = scan_deliveries(mail_root)
    return collections.Counter({t: len(c) for t, c in deliveries.items()}), untagged


class MaildirStore:
    """A destination whose deliveries are Maildir files: the instance's
    (local) or Dovecot's (LMTP). check(head bytes) is noted for each copy
    (e.g. whether a milter's header is there). Unless own_pids, the pids
    in the file names are not the instance's (Dovecot's) and read as 0."""

    def __init__(self, name, root, pattern="*/new/*", prefix=None, check=None, own_pids=True):
        self.name, self.root, self.pattern = name, root, pattern
        self.prefix, self.check, self.own_pids = prefix, check, own_pids

    def scan(self):
        found, untagged = scan_deliveries(self.root, self.pattern, self.prefix, self.check)
        if not self.own_pids:
            found = {t: [(when, 0, ok) for when, _, ok in c] for t, c in found.items()}
        return found, untagged


class SinkStore:
    """A destination whose deliveries are the messages a recording SMTP
    server kept (smtp_peers.Receiver: dicts with data and received_at).
    The delivering process is not known here (pid 0): a duplicate is
    explained from the maillog instead (QueueEvidence)."""

    def __init__(self, name, receiver, prefix=None, check=None):
        self.name, self.receiver, self.prefix, self.check = name, receiver, prefix, check

    def scan(self):
        out = collections.defaultdict(list)
        untagged = 0
        for msg in list(self.receiver.messages):
            tag = message_tag(msg["data"])
            if tag is None:
                untagged += 1
                continue
            if self.prefix is not None and not tag.startswith(self.prefix):
                continue
            out[tag].append((msg["received_at"], 0,
                             self.check(msg["data"]) if self.check else None))
        for copies in out.values():
            copies.sort()
        return out, untagged


def scan_stores(stores):
    """scan() of every store merged: ({tag: copies}, {store name: untagged},
    {tag: store name})."""
    deliveries, untagged, where = {}, {}, {}
    for store in stores:
        found, untagged[store.name] = store.scan()
        for tag, copies in found.items():
            deliveries.setdefault(tag, []).extend(copies)
            where[tag] = store.name
    for copies in deliveries.values():
        copies.sort()
    return deliveries, untagged, where


AGENT_DEATH_RE = re.compile(r"^(\w+): to=<[^>]*>, .*status=deferred \(unknown mail transport "
                            r"error\)$")
MESSAGE_ID_RE = re.compile(r"^(\w+): message-id=<([^@>]+)@")
QUEUE_ACTIVE_RE = re.compile(r"^(\w+): from=<[^>]*>, .*\(queue active\)$")
REMOVED_RE = re.compile(r"^(\w+): removed$")


class QueueEvidence:
    """What the maillog (instance.log_lines()) says about each message:

    queue_ids    {tag: queue id}, from cleanup's message-id lines (the tags
                 are the local parts of tagged_message's Message-IDs), so a
                 message whose 250 was lost is named too;
    agent_died   queue ids a delivery agent held when it died: qmgr logs
                 the recipients of a job whose agent connection broke
                 while busy as deferred with "unknown mail transport error"
                 (qmgr/transport.c);
    active_in    {queue id: pids of the qmgr processes that took it into
                 active/ ("(queue active)")}: when one of them was killed
                 before the done mark, the delivery it had started goes on
                 in the agent and the next qmgr starts another;
    removed_by   {queue id: pids of the qmgr processes that removed it}."""

    def __init__(self, log_lines):
        self.queue_ids, self.agent_died = {}, set()
        self.active_in = collections.defaultdict(set)
        self.removed_by = collections.defaultdict(set)
        for line in log_lines:
            if line.program.endswith("/cleanup"):
                m = MESSAGE_ID_RE.match(line.text)
                if m:
                    self.queue_ids[m[2]] = m[1]
            elif line.program.endswith("/qmgr"):
                m = AGENT_DEATH_RE.match(line.text)
                if m:
                    self.agent_died.add(m[1])
                m = QUEUE_ACTIVE_RE.match(line.text)
                if m:
                    self.active_in[m[1]].add(line.pid)
                m = REMOVED_RE.match(line.text)
                if m:
                    self.removed_by[m[1]].add(line.pid)

    def qmgr_died_holding(self, qid, killed_qmgrs):
        """Whether a qmgr that took qid into active/ was killed without
        having removed it. By pid, not by clock: Dovecot's Maildir names
        carry the time of its event loop, which may lag the kill."""
        return bool((self.active_in.get(qid, set()) - self.removed_by.get(qid, set()))
                    & killed_qmgrs)


def explain_duplicates(deliveries, kill_log, log_lines=()):
    """{tag: why} for each duplicated tag of deliveries (scan_deliveries,
    scan_stores):

    "agent"  the delivery agent that wrote the first copy was killed before
             qmgr heard of it: the pid in its Maildir name was killed, or
             qmgr logged that the agent holding the message died;
    "qmgr"   a qmgr that had taken the message into active/ was killed
             before removing it;
    "all"    the whole instance was killed between the first copy and the
             last: the agent delivering the first copy died with it before
             it heard the peer's reply or marked the recipient done (an
             agent's window, as "agent", but its pid is not in the kill log:
             Dovecot's Maildir names do not carry it, and a kill of every
             process names none); checked before "qmgr";
    None     no kill explains it.

    log_lines (the instance's maillog) gives QueueEvidence; without it only
    Maildir pids and whole-instance kills explain a duplicate."""
    killed_pids = {pid for _, name, pid in kill_log}
    qmgr_killed = {pid for _, name, pid in kill_log if name == "qmgr"}
    all_killed = [t for t, name, _ in kill_log if name == "all"]
    ev = QueueEvidence(log_lines)
    out = {}
    for tag, copies in deliveries.items():
        if len(copies) < 2:
            continue
        first_time, first_pid = copies[0][:2]
        last_time = copies[-1][0]
        qid = ev.queue_ids.get(tag)
        if (first_pid and first_pid in killed_pids) or qid in ev.agent_died:
            out[tag] = "agent"
        # Before the qmgr check: a message a killed qmgr once held may be
        # in a later qmgr's delivery when the whole instance dies, and then
        # that kill, not the qmgr's, made the second copy. Maildir names
        # carry the clock we read too; allow for rounding.
        elif any(first_time - 0.001 <= t <= last_time + 0.001 for t in all_killed):
            out[tag] = "all"
        elif ev.qmgr_died_holding(qid, qmgr_killed):
            out[tag] = "qmgr"
        else:
            out[tag] = None
    return out


def unexplained_duplicates(deliveries, kill_log, log_lines=()):
    """The duplicated tags of deliveries that no kill explains
    (explain_duplicates), with their copies."""
    why = explain_duplicates(deliveries, kill_log, log_lines)
    return {tag: deliveries[tag] for tag, w in why.items() if w is None}


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


def wait_all_delivered(instance, tags, timeout, stores=None):
    """Wait until nothing deliverable is left in the queue and every tag in
    tags has been delivered at least once to one of stores (default: the
    instance's Maildirs; the stores are read only once the queue is
    empty). Returns scan_deliveries' result (one store) or scan_stores'
    (a list given). Raises AssertionError naming what is missing."""
    scan = (lambda: scan_deliveries(instance.mail)) if stores is None else \
        (lambda: scan_stores(stores))
    end = time.monotonic() + timeout
    missing, pending = list(tags), []
    while True:
        pending = complete_queue_files(instance)
        if not pending:
            found = scan()
            missing = [t for t in tags if not found[0].get(t)]
            if not missing:
                return found
        if time.monotonic() >= end:
            raise AssertionError(
                f"after {timeout}s: queue still holds {pending[:10]}; acknowledged "
                f"messages not delivered (last look): {len(missing)}, e.g. {missing[:5]}")
        time.sleep(0.3)


def report(title, **counts):
    """Print a one-line summary that pytest -s (or a failure) shows."""
    print(f"{title}: " + ", ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
