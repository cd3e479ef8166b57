"""The block-level power-cut harness (issue #24, tests/README.md "Power
cuts"): an MTA (Postern, or the Debian Postfix as the reference) keeps its
queue and the Maildirs on a small ext4 file system on a loop device whose
backing file sits on the recording layer (recorder.py), which logs every
block write and every flush in order. A client sends tagged messages and
marks the log when each 250 arrives. From the log, crash images are built
at cut points: each flush boundary, and random positions where a random
subset of the writes issued since the last flush reached the disk (a disk
may persist any of them). Each image gets fsck -y, is mounted where the
recording ran, the MTA is started on it to recover and deliver, and:

  lost     - a message whose 250 came before the cut is neither delivered
             intact nor in the queue;
  corrupt  - a delivered file that is not exactly a message that was sent
             (a half-written queue file was scheduled and delivered);
  human    - fsck could not repair the image, or it did not mount, or the
             MTA did not start, or the queue did not drain by itself.

Cut points that produce the same image share one recovery run (the outcome
depends only on the image); every cut point is still checked against its
own set of acknowledged messages.

    python3 tests/powercut/powercut.py [--cuts N] [--fs nojournal,journal]
                                       [--mta postern,postfix] [--messages N]

prints one line per (MTA, file system) and exits non-zero when Postern
lost a message or delivered a corrupt one. Needs root (loop, mount, FUSE).
"""

import argparse
import bisect
import collections
import hashlib
import os
import random
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))

from recorder import read_log   # noqa: E402
from postern_instance import (HELO, SENDER, Instance, crlf, free_port, is_alive,   # noqa: E402
                              rfc2822_now, wait_port)
from postfix_reference import PostfixInstance   # noqa: E402

PYTHON = "/usr/bin/python3"   # the Debian python3, which has python3-fusepy
RECOVERY_TIMEOUT = 10.0       # seconds a recovery may take before it needs a human
QUIET = 2.0                   # seconds without progress that end a recovery
SIZE = 32 << 20               # bytes of the file system under test
USERS = tuple(f"u{i}" for i in range(8))   # Maildirs made while mail flows (fsync_dir.h)
TAG_RE = re.compile(rb"^X-Test-Id: (\S+)$", re.M)
# In a queue file a header line is a record (a type byte and a length
# before it), so the tag is found by its own shape.
QUEUED_TAG_RE = re.compile(rb"X-Test-Id: ([a-z]+-\d{4})")
FILE_SYSTEMS = {
    # The layout of this machine's root: ext4 without a journal.
    "nojournal": ["-O", "^has_journal"],
    # ext4 as mkfs makes it by default, with its journal (data=ordered).
    "journal": [],
}


def run(argv, timeout=60, check=True):
    p = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {p.returncode}: "
                           f"{(p.stderr or p.stdout).strip()}")
    return p


def wait_for(predicate, timeout, interval=0.05):
    end = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


# --- block devices -------------------------------------------------------------


class LoopMount:
    """image attached to a free loop device (direct I/O when asked) and
    mounted on mnt; close() undoes both whatever happened."""

    def __init__(self, image, mnt, direct_io=False):
        self.dev = None
        args = ["losetup", "-f", "--show"] + (["--direct-io=on"] if direct_io else [])
        self.dev = run(args + [image]).stdout.strip()
        self.mounted = False
        try:
            run(["mount", "-t", "ext4", self.dev, mnt])
        except RuntimeError:
            self.close()
            raise
        self.mnt = mnt
        self.mounted = True

    def close(self):
        if self.mounted:
            if run(["umount", self.mnt], check=False).returncode != 0:
                time.sleep(0.5)
                if run(["umount", self.mnt], check=False).returncode != 0:
                    run(["umount", "-l", self.mnt], check=False)
            self.mounted = False
        if self.dev:
            run(["losetup", "-d", self.dev], check=False)
            # Until the device lets go of the image, it may still write to
            # it (a lazy unmount ends when its last user does).
            backing = Path("/sys/block") / Path(self.dev).name / "loop" / "backing_file"
            wait_for(lambda: not backing.exists(), 10, interval=0.1)
            self.dev = None


class Recording:
    """A fresh ext4 file system (mkfs options opts) in work/back/disk,
    served through the recorder on work/fuse and mounted on mnt through a
    direct-I/O loop device. .log is the recorder's log; .base a copy of the
    image as mkfs left it (where replays start); mark(text) logs a mark."""

    def __init__(self, work, mnt, opts):
        self.work, self.mnt = Path(work), mnt
        back, self.fuse = self.work / "back", self.work / "fuse"
        back.mkdir()
        self.fuse.mkdir()
        disk = back / "disk"
        with open(disk, "wb") as f:
            f.truncate(SIZE)
        # Everything written at once: no lazy initialisation left for a
        # kernel thread to do during the recording.
        run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-E",
             "lazy_itable_init=0,lazy_journal_init=0", *opts, disk])
        self.base = self.work / "base.img"
        shutil.copyfile(disk, self.base)
        self.log = self.work / "log"
        self.proc = subprocess.Popen([PYTHON, str(HERE / "recorder.py"), str(disk),
                                      str(self.fuse), str(self.log)],
                                     stdin=subprocess.DEVNULL,
                                     stdout=open(self.work / "recorder.out", "wb"),
                                     stderr=subprocess.STDOUT)
        self.loop = None
        self.mark_fd = None
        if not wait_for(lambda: (self.fuse / "mark").exists() or self.proc.poll() is not None, 20):
            self.close()
            raise RuntimeError("the recorder did not mount")
        if self.proc.poll() is not None:
            raise RuntimeError("the recorder failed: " +
                               (self.work / "recorder.out").read_text(errors="replace"))
        self.mark_fd = os.open(self.fuse / "mark", os.O_WRONLY)
        self.lock = threading.Lock()
        self.loop = LoopMount(self.fuse / "disk", mnt, direct_io=True)

    def mark(self, text):
        with self.lock:
            os.write(self.mark_fd, text.encode())

    def close(self):
        if self.loop:
            self.loop.close()
            self.loop = None
        if self.mark_fd is not None:
            os.close(self.mark_fd)
            self.mark_fd = None
        if self.proc.poll() is None:
            run(["umount", self.fuse], check=False)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                run(["umount", "-l", self.fuse], check=False)


# --- the MTAs -------------------------------------------------------------------


# What a master logs when a daemon cannot run at all (Postfix's words,
# which Postern keeps): no waiting can help then, only a human.
STUCK_RE = re.compile(r"(fatal: .*|panic: .*|bad command startup -- throttling)")


def stuck_line(log):
    try:
        m = STUCK_RE.search(Path(log).read_text(errors="replace"))
    except OSError:
        return None
    return m[0][:300] if m else None


class Postern:
    """A Postern instance with its configuration and log outside the file
    system under test, its queue and Maildirs (mail_spool_directory) on it."""

    name = "postern"

    def __init__(self, mnt):
        self.mnt = Path(mnt)
        self.inst = Instance(free_port())
        self.inst.queue, self.inst.mail = self.mnt / "queue", self.mnt / "mail"
        self.inst.write_main_cf(["minimal_backoff_time = 1s", "maximal_backoff_time = 2s",
                                 "queue_run_delay = 1s"])
        self.port = self.inst.port
        self.queue, self.mail = self.inst.queue, self.inst.mail

    def prepare(self):
        """Directories a fresh file system needs before the first start."""
        self.queue.mkdir()
        self.mail.mkdir()

    def start(self):
        self.inst.log.write_bytes(b"")
        self.inst.start()

    def stop(self):
        try:
            self.inst.stop()
        except AssertionError:
            self.inst.kill_everything()

    def log_tail(self):
        return self.inst.log_tail(20)

    def stuck(self):
        return stuck_line(self.inst.log)

    def cleanup(self):
        self.inst.cleanup()


class Postfix:
    """The Debian Postfix with its queue and Maildirs on the file system
    under test: local mail goes through its virtual(8) delivery agent to
    MNT/mail/USER/ Maildirs, as a uid that owns them."""

    name = "postfix"
    UID = 65534   # nobody: the virtual agent writes as this uid

    def __init__(self, mnt):
        self.mnt = Path(mnt)
        self.queue, self.mail = self.mnt / "pfqueue", self.mnt / "mail"
        maps = ", ".join(f"{u}@localhost={u}/" for u in USERS)
        self.pf = PostfixInstance(extra_main=[
            "virtual_mailbox_domains = localhost",
            f"virtual_mailbox_base = {self.mail}",
            f"virtual_mailbox_maps = inline:{{{maps}}}",
            f"virtual_uid_maps = static:{self.UID}",
            f"virtual_gid_maps = static:{self.UID}",
            "queue_run_delay = 1s", "minimal_backoff_time = 1s",
            "maximal_backoff_time = 2s",
        ])
        cf = self.pf.etc / "main.cf"
        cf.write_text(cf.read_text().replace(f"queue_directory = {self.pf.queue}",
                                             f"queue_directory = {self.queue}"))
        with open(self.pf.etc / "master.cf", "a") as f:
            f.write("virtual   unix  -       n       n       -       -       virtual\n")
        self.pf.queue = self.queue
        self.port = self.pf.port

    def prepare(self):
        self.queue.mkdir()
        self.mail.mkdir()
        for u in USERS:
            (self.mail / u).mkdir()
        for dirpath, _dirs, _files in os.walk(self.mail):
            os.chown(dirpath, self.UID, self.UID)

    def start(self):
        self.pf.log.write_bytes(b"") if self.pf.log.exists() else None
        self.pf.start()

    def stop(self):
        self.pf.stop()

    def log_tail(self):
        return self.pf.log_tail(20)

    def stuck(self):
        return stuck_line(self.pf.log)

    def cleanup(self):
        self.pf.cleanup()


MTAS = {"postern": Postern, "postfix": Postfix}


# --- the load -------------------------------------------------------------------


def message_for(tag):
    """The message (LF text) sent under tag: a size between a few hundred
    bytes and ~24 KB, so that queue files span one to several blocks."""
    n = int(hashlib.sha256(tag.encode()).hexdigest()[:8], 16)
    lines = (n % 340)
    body = f"tag {tag}\n" + "".join(f"{tag} line {i:04d} " + "y" * 50 + "\n"
                                    for i in range(lines))
    return (f"From: {SENDER}\nTo: undisclosed-recipients:;\nSubject: {tag}\n"
            f"Date: {rfc2822_now()}\nMessage-ID: <{tag}@{HELO}>\nX-Test-Id: {tag}\n\n{body}")


class Load:
    """total messages over conns SMTP connections to port; every 250 is
    marked in the recording ("ack TAG"). .sent: tag -> message bytes (LF)
    of every message whose DATA was sent; .acked: tags that got a 250."""

    def __init__(self, port, recording, total, conns=3, prefix="pc"):
        self.port, self.rec, self.total, self.conns = port, recording, total, conns
        self.prefix = prefix
        self.lock = threading.Lock()
        self.next = 0
        self.sent, self.acked, self.failures = {}, [], collections.Counter()

    def run(self, timeout):
        threads = [threading.Thread(target=self._run, args=(timeout,), daemon=True)
                   for _ in range(self.conns)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 5)

    def _take(self):
        with self.lock:
            if self.next >= self.total:
                return None
            self.next += 1
            return f"{self.prefix}-{self.next:04d}"

    def _run(self, timeout):
        end = time.monotonic() + timeout
        s = None
        while time.monotonic() < end:
            tag = self._take()
            if tag is None:
                break
            try:
                if s is None:
                    s = smtplib.SMTP("127.0.0.1", self.port, local_hostname=HELO, timeout=20)
                    s.ehlo(HELO)
                self._send(s, tag)
            except (OSError, smtplib.SMTPException) as e:
                self.failures[type(e).__name__] += 1
                s = None
        if s is not None:
            try:
                s.quit()
            except (OSError, smtplib.SMTPException):
                pass

    def _send(self, s, tag):
        msg = message_for(tag)
        rcpt = USERS[int(tag.rsplit("-", 1)[1]) % len(USERS)] + "@localhost"
        if s.mail(SENDER)[0] != 250 or s.rcpt(rcpt)[0] != 250:
            self.failures["refused"] += 1
            s.rset()
            return
        with self.lock:
            self.sent[tag] = msg.encode()
        code, _resp = s.data(crlf(msg))
        if code == 250:
            self.rec.mark(f"ack {tag}\n")
            with self.lock:
                self.acked.append(tag)
        else:
            self.failures[f"DATA {code}"] += 1


# --- cut points and images ------------------------------------------------------


class Cut:
    """A cut at log position pos (records [0, pos) happened): the writes
    before flush_pos are on the disk, and of the writes in [flush_pos, pos)
    those in .kept. .acked: tags acknowledged before the cut."""

    def __init__(self, pos, flush_pos, kept, acked, kind):
        self.pos, self.flush_pos, self.kept, self.acked, self.kind = \
            pos, flush_pos, tuple(kept), acked, kind

    def image_key(self):
        return (self.flush_pos, self.kept)


def choose_cuts(log, start, n, rng):
    """n cut points after log position start: up to half of them at flush
    boundaries (all of them when there are few enough, else an even
    sample), the rest at random positions with a random subset of the
    writes since the last flush."""
    all_flushes = [i for i, (k, _, _) in enumerate(log) if k == b"F"]
    flushes = [i for i in all_flushes if i >= start]
    acks_at = [(i, d.decode().split()[1]) for i, (k, _, d) in enumerate(log)
               if k == b"M" and d.startswith(b"ack ")]
    n_flush = min(len(flushes), n // 2)
    picked = [flushes[int(j * len(flushes) / n_flush)] for j in range(n_flush)] if n_flush else []
    positions = [(f + 1, "flush") for f in picked]
    for _ in range(n - n_flush):
        positions.append((rng.randrange(start + 1, len(log) + 1), "random"))
    positions.sort()
    cuts = []
    for pos, kind in positions:
        # Everything before the last flush that completed before the cut
        # is on the disk.
        k = bisect.bisect_left(all_flushes, pos)
        flush_pos = all_flushes[k - 1] + 1 if k else 0
        pending = [i for i in range(flush_pos, pos) if log[i][0] == b"W"]
        kept = [i for i in pending if rng.random() < 0.5] if kind == "random" else []
        acked = frozenset(t for i, t in acks_at if i < pos)
        cuts.append(Cut(pos, flush_pos, kept, acked, kind))
    return cuts


class ImageBuilder:
    """Crash images replayed from the base image: the durable prefix is
    kept in one file and only moves forward (cuts come in log order)."""

    def __init__(self, base, log, work):
        self.log = log
        self.durable = Path(work) / "durable.img"
        shutil.copyfile(base, self.durable)
        self.fd = os.open(self.durable, os.O_RDWR)
        self.applied = 0

    def build(self, cut, out):
        while self.applied < cut.flush_pos:
            kind, off, data = self.log[self.applied]
            if kind == b"W":
                os.pwrite(self.fd, data, off)
            self.applied += 1
        # A new file, not the last image's rewritten: a loop device still
        # attached to that one (a mount a lingering process kept busy,
        # unmounted lazily) writes into its own file's inode when it lets
        # go, and would otherwise overwrite this image's superblock, group
        # descriptors or journal: once seen as ten or forty "lost" messages
        # that the same image, checked again by hand, still held.
        Path(out).unlink(missing_ok=True)
        shutil.copyfile(self.durable, out)
        with open(out, "r+b") as f:
            for i in cut.kept:
                _, off, data = self.log[i]
                f.seek(off)
                f.write(data)

    def close(self):
        os.close(self.fd)


# --- recovery and checks ----------------------------------------------------------


def split(data):
    head, sep, body = data.partition(b"\n\n")
    return head.split(b"\n"), body


def intact(delivered, sent):
    """Whether a delivered file is the sent message: the same body, and
    every header line that was sent (the MTA adds its own above them)."""
    dh, db = split(delivered)
    sh, sb = split(sent)
    return db == sb and all(h in dh for h in sh)


def scan_mail(mail, sent):
    """({tag: intact copies}, [corrupt files]) of every delivered file
    (new/ and cur/ of each Maildir)."""
    good, corrupt = collections.Counter(), []
    for f in list(mail.glob("*/new/*")) + list(mail.glob("*/cur/*")):
        try:
            data = f.read_bytes()
        except OSError:
            continue
        m = TAG_RE.search(data.split(b"\n\n", 1)[0])
        tag = m[1].decode() if m else None
        if tag in sent and intact(data, sent[tag]):
            good[tag] += 1
        else:
            corrupt.append(f"{f.relative_to(mail)} ({len(data)} bytes, tag {tag})")
    return good, corrupt


def queue_files(queue, subs=("incoming", "active", "maildrop"), complete_only=False):
    """Files under the given queues; with complete_only, of incoming/ only
    those the writer finished (mode 0700, Postfix's and Postern's mark): an
    unfinished one is never scheduled, and both MTAs remove it later."""
    out = []
    for sub in subs:
        for dirpath, _dirs, files in os.walk(queue / sub):
            for f in files:
                p = Path(dirpath) / f
                try:
                    if complete_only and sub == "incoming" and p.stat().st_mode & 0o777 != 0o700:
                        continue
                except OSError:
                    continue
                out.append(p)
    return out


def tags_in_queue(queue):
    """Tags of the messages in the queue (any file under deferred/, hold/,
    incoming/, active/)."""
    out = set()
    for f in queue_files(queue, ("incoming", "active", "deferred", "hold", "maildrop")):
        try:
            out.update(t.decode() for t in QUEUED_TAG_RE.findall(f.read_bytes()))
        except OSError:
            pass
    return out


def where_tags_are(root):
    """{tag: a file under root that holds it}: where a lost message went
    (lost+found/, corrupt/, a Maildir's tmp/), for the report."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            try:
                data = p.read_bytes() if p.is_file() else b""
            except OSError:
                continue
            for t in QUEUED_TAG_RE.findall(data):
                out.setdefault(t.decode(), str(p.relative_to(root)))
    return out


class Outcome:
    """What recovery from one image gave: .human (why it needed one, or
    None), .delivered (Counter of intact copies), .corrupt, .queued."""

    def __init__(self):
        self.human, self.delivered, self.corrupt, self.queued = None, collections.Counter(), [], set()
        self.fsck, self.fsck_text, self.log, self.where = None, "", "", {}


def recover(mta, image, mnt, must_have, sent, timeout):
    """fsck -y image, mount it on mnt, start the MTA, wait until it has
    delivered every tag of must_have and its incoming and active queues are
    empty (or timeout), stop it, and look at what it left."""
    out = Outcome()
    if os.environ.get("POWERCUT_KEEP"):   # the image as the cut left it, for keep()
        shutil.copyfile(image, Path(image).with_suffix(".cut"))
    p = run(["fsck.ext4", "-y", "-f", image], check=False, timeout=120)
    out.fsck, out.fsck_text = p.returncode, p.stdout
    if p.returncode >= 4:
        out.human = f"fsck exited {p.returncode}: {p.stdout[-300:]}"
        return out
    try:
        loop = LoopMount(image, mnt)
    except RuntimeError as e:
        out.human = f"mount: {e}"
        return out
    try:
        try:
            mta.start()
        except AssertionError as e:
            out.human = f"{mta.name} did not start: {str(e)[:500]}"
            return out

        # Done when every acknowledged message is delivered and nothing is
        # waiting in incoming/ or active/, or when that queue is empty and
        # nothing has changed for QUIET seconds (what is missing then is
        # lost, not late).
        state = {"last": None, "since": time.monotonic()}

        def settled():
            stuck = mta.stuck()
            if stuck:
                state["stuck"] = stuck
                return True
            good, _ = scan_mail(mta.mail, sent)
            busy = queue_files(mta.queue, complete_only=True)
            if not busy and all(good[t] for t in must_have):
                return True
            now = (sum(good.values()), len(busy))
            if now != state["last"]:
                state["last"], state["since"] = now, time.monotonic()
            return not busy and time.monotonic() - state["since"] >= QUIET
        if not wait_for(settled, timeout, interval=0.1) or state.get("stuck"):
            left = queue_files(mta.queue, complete_only=True)
            if state.get("stuck"):
                out.human = f"{mta.name} cannot go on: {state['stuck']}"
            elif left:
                out.human = (f"queue did not drain in {timeout}s: {[str(f) for f in left[:5]]}\n"
                             + mta.log_tail())
        mta.stop()
        out.log = mta.log_tail()
        out.delivered, out.corrupt = scan_mail(mta.mail, sent)
        out.queued = tags_in_queue(mta.queue)
        out.where = where_tags_are(Path(mnt))
    finally:
        try:
            mta.stop()
        finally:
            loop.close()
    return out


# --- one run ----------------------------------------------------------------------


class Result:
    def __init__(self, mta, fs):
        self.mta, self.fs = mta, fs
        self.cuts = self.images = self.at_risk = self.lost = self.corrupt = self.human = 0
        self.acked = self.writes = self.flushes = 0
        self.lost_detail, self.corrupt_detail, self.human_detail = [], [], []

    def line(self):
        return (f"powercut {self.mta} {self.fs}: cut_points={self.cuts} images={self.images} "
                f"writes={self.writes} flushes={self.flushes} acknowledged={self.acked} "
                f"acknowledged_at_risk={self.at_risk} lost={self.lost} "
                f"corrupt_scheduled={self.corrupt} needs_human={self.human}")


def record_load(mta, work, mnt, fs, messages):
    """Run the load against mta on a recorded file system; returns
    (log, start position, base image, load)."""
    rec = Recording(work, mnt, FILE_SYSTEMS[fs])
    try:
        mta.prepare()
        os.sync()   # what an installation made is on the disk before the load
        mta.start()
        wait_port(mta.port, 20)
        rec.mark("start\n")
        load = Load(mta.port, rec, messages)
        load.run(timeout=120)
        # Let delivery finish, so the log covers it too.
        wait_for(lambda: all(scan_mail(mta.mail, load.sent)[0][t] for t in load.acked)
                 and not queue_files(mta.queue), 60, interval=0.1)
        mta.stop()
    finally:
        try:
            mta.stop()
        finally:
            rec.close()
    log = read_log(rec.log)
    start = next(i for i, (k, _, d) in enumerate(log) if k == b"M" and d == b"start\n")
    return log, start, rec.base, load


def run_one(mta_name, fs, n_cuts, messages, seed, workroot, verbose=False):
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix=f"pc.{mta_name}.{fs}.", dir=workroot))
    mnt = Path(tempfile.mkdtemp(prefix="pcm.", dir="/tmp"))
    mta = MTAS[mta_name](mnt)
    res = Result(mta_name, fs)
    try:
        log, start, base, load = record_load(mta, work, mnt, fs, messages)
        res.writes = sum(1 for k, _, _ in log[start:] if k == b"W")
        res.flushes = sum(1 for k, _, _ in log[start:] if k == b"F")
        res.acked = len(load.acked)
        if len(load.acked) < messages // 2:
            raise RuntimeError(f"only {len(load.acked)} of {messages} messages acknowledged "
                               f"({dict(load.failures)})\n{mta.log_tail()}")
        cuts = choose_cuts(log, start, n_cuts, rng)
        by_image = collections.OrderedDict()
        for c in cuts:
            by_image.setdefault(c.image_key(), []).append(c)
        builder = ImageBuilder(base, log, work)
        image = work / "crash.img"
        try:
            for key, group in by_image.items():
                builder.build(group[0], image)
                must = frozenset().union(*(c.acked for c in group))
                out = recover(mta, image, mnt, must, load.sent, timeout=RECOVERY_TIMEOUT)
                res.images += 1
                # Postern's failures only: Postfix's are hundreds of 32 MB images.
                if (judge(res, group, out, log, verbose) and mta_name == "postern"
                        and os.environ.get("POWERCUT_KEEP")):
                    keep(Path(os.environ["POWERCUT_KEEP"]), res, group, out, image, log)
        finally:
            builder.close()
    finally:
        mta.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        try:
            os.rmdir(mnt)
        except OSError:
            pass
    return res


def keep(where, res, group, out, image, log):
    """POWERCUT_KEEP=DIR: a failed cut point's image (before fsck), and
    what went wrong with the log records since its last flush."""
    c = group[0]
    stem = where / f"{res.mta}-{res.fs}-cut{c.pos}"
    shutil.copyfile(Path(image).with_suffix(".cut"), stem.with_suffix(".img"))
    tail = [f"{i} {log[i][0].decode()} block {log[i][1] // 4096} {len(log[i][2])} bytes"
            + (f" {log[i][2]!r}" if log[i][0] == b"M" else "")
            for i in range(max(0, c.flush_pos - 40), c.pos)]
    stem.with_suffix(".txt").write_text(
        f"{res.line()}\n{res.lost_detail[-1:]}\n{out.human}\n{out.corrupt}\n"
        f"kept writes: {c.kept}\n--- fsck ---\n{out.fsck_text}\n--- log ---\n{out.log}\n"
        "--- records ---\n" + "\n".join(tail) + "\n")


def judge(res, group, out, log, verbose):
    """Count a recovery's outcome for each cut point that shares its
    image; whether any of them failed."""
    failed = bool(out.corrupt or out.human)
    for c in group:
        res.cuts += 1
        res.at_risk += len(c.acked)
        lost = sorted(t for t in c.acked if not out.delivered[t] and t not in out.queued)
        if lost:
            failed = True
            res.lost += len(lost)
            res.lost_detail.append(f"cut {c.pos} ({c.kind}, flush at {c.flush_pos}, "
                                   f"{len(c.kept)} later writes kept): lost "
                                   + ", ".join(f"{t} ({out.where.get(t, 'nowhere')})"
                                               for t in lost[:5]))
        if out.human:
            res.human += 1
            res.human_detail.append(f"cut {c.pos}: {out.human}")
    if out.corrupt:
        res.corrupt += len(out.corrupt)
        res.corrupt_detail.append(f"cut {group[0].pos}: {out.corrupt[:3]}")
    if verbose:
        c = group[0]
        print(f"  cut {c.pos} {c.kind} kept={len(c.kept)} acked={len(c.acked)} "
              f"fsck={out.fsck} delivered={sum(out.delivered.values())} "
              f"corrupt={len(out.corrupt)} human={out.human}", flush=True)
    return failed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cuts", type=int, default=500, help="cut points per file system")
    ap.add_argument("--fs", default="nojournal,journal")
    ap.add_argument("--mta", default="postern,postfix")
    ap.add_argument("--messages", type=int, default=40)
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("powercut: needs root (loop devices, mount, FUSE)")
    workroot = "/dev/shm" if os.path.isdir("/dev/shm") else None
    results = []
    for mta in args.mta.split(","):
        for fs in args.fs.split(","):
            t0 = time.monotonic()
            r = run_one(mta, fs, args.cuts, args.messages, args.seed, workroot, args.verbose)
            results.append(r)
            print(r.line() + f" seconds={time.monotonic() - t0:.0f}", flush=True)
            for d in r.lost_detail[:10] + r.corrupt_detail[:10] + r.human_detail[:10]:
                print("   ", d, flush=True)
    bad = [r for r in results if r.mta == "postern" and (r.lost or r.corrupt or r.human)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
