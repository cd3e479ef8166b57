"""The two MTAs under benchmark, behind one interface (bench.py, deferred.py):
a Postern instance (the e2e helpers' Instance, instance mode) and a private
Postfix instance, each in its own directory under /tmp, on its own loopback
port, never touching /etc/postfix, port 25 or the network.

Equivalent settings, so that the two do the same work per message:
  - both fsync the queue file before the 250 after DATA (Postfix's cleanup
    always does; Postern's cleanup does) and fsync each Maildir file before
    reporting it delivered;
  - local mail goes to a Maildir, mail/bench/new: Postern in instance mode
    (every local part of mydestination is a Maildir under
    mail_spool_directory; alias_maps and forward_path empty, so no alias or
    .forward lookups), Postfix through virtual(8) with one mailbox
    (virtual_mailbox_maps = inline:{bench@localhost=bench/}: no passwd,
    alias or .forward lookups, Postfix's lightest Maildir path);
  - 20 concurrent deliveries into that Maildir on both (Postern
    local_destination_concurrency_limit, Postfix's default
    virtual_destination_concurrency_limit);
  - relayed mail goes to relayhost [127.0.0.1]:PORT (smtp-sink) with no
    DNS at all (Postern: dns_servers = 127.0.0.1:9, a closed port; Postfix:
    smtp_dns_support_level = disabled); in the local scenarios relayhost is
    [127.0.0.1]:9, so a stray bounce can only be deferred, never sent out;
  - Postfix's in_flow_delay is 0 (Postern has no such throttle; with it,
    Postfix's smtpd would sleep up to 1 s before MAIL whenever qmgr falls
    behind, which measures the throttle, not the accept path);
  - Postfix's smtpd process limit is raised to cover every concurrent
    session (Postern serves many sessions per smtpd process; Postfix needs
    one process per session, and a session left in the listen queue would
    measure the limit, not the MTA). Everything else is each MTA's default,
    including logging to a file (Postern: maillog_file written by each
    daemon; Postfix: maillog_file through postlogd).
"""

import os
import pwd
import grp
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import postern_instance as pi  # noqa: E402
from procstat import process_tree, read_stat, start_time  # noqa: E402

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTFIX_QUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"
POSTFIX_SUPER = shutil.which("postsuper") or "/usr/sbin/postsuper"
POSTERN_QUEUE = pi.BUILD / "bin" / "postqueue"
RECIPIENT_USER = "bench"
LOCAL_RCPT = f"{RECIPIENT_USER}@localhost"
RELAY_RCPT = f"{RECIPIENT_USER}@relay.example"
SENDER = "sender@localhost"
CLOSED_PORT = 9   # nothing listens here: a safe relayhost for the local scenarios
# Parent of every instance directory, marked as a top of directory
# hierarchy (chattr +T) so that ext4 spreads its subdirectories over block
# groups as it does directories in /. Each run then allocates its inodes
# in a group of its own: on ext4 without a journal a new inode is
# allocated past every inode freed in its group in the last one to six
# minutes, so a run sharing a group with files deleted just before (the
# previous run's 10,000 Maildir files) paid for them on every file it
# created, whichever MTA it was. Within a run each MTA still pays for what
# it deletes itself.
BENCH_ROOTS = Path("/tmp/postern-bench-roots")


def fresh_root(prefix):
    """A new, empty instance directory (mode 0755) under BENCH_ROOTS."""
    BENCH_ROOTS.mkdir(mode=0o755, exist_ok=True)
    subprocess.run(["chattr", "+T", str(BENCH_ROOTS)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)   # best effort: not ext4, no gain
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=BENCH_ROOTS))
    os.chmod(root, 0o755)
    return root


def count_files(path):
    """Number of entries in a directory (0 when it does not exist)."""
    try:
        with os.scandir(path) as it:
            return sum(1 for _ in it)
    except FileNotFoundError:
        return 0


def count_tree(root, subdirs):
    """Regular files below root/SUB for each SUB, recursively."""
    n = 0
    for sub in subdirs:
        for _dirpath, _dirs, files in os.walk(Path(root) / sub):
            n += len(files)
    return n


def run_quiet(argv, timeout, env=None):
    """Run a command, output to a temporary file (a daemon inheriting a pipe
    must not keep us waiting). Returns (rc, output)."""
    return pi.run_logged([str(a) for a in argv], timeout, env=env)


def pid_from_file(path):
    """The live process whose pid a pid file holds (both MTAs write
    queue_directory/pid/master.pid), or None."""
    try:
        pid = int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    st = read_stat(pid)
    return pid if st and st[2] != "Z" else None


class MTA:
    """Common interface. Subclasses set .name, .root, .port, .queue, .mail."""

    name = "?"

    def maildir(self):
        return self.mail / RECIPIENT_USER / "new"

    counter = None   # callable(mta) counting delivered messages, when not the Maildir

    def delivered(self):
        if self.counter:
            return self.counter(self)
        return count_files(self.maildir())

    def tree(self):
        pid = self.master_pid()
        return process_tree(pid) if pid else []

    def pids_named(self, comm):
        out = []
        for pid in self.tree():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == comm:
                        st = read_stat(pid)
                        if st and st[2] != "Z":
                            out.append(pid)
            except OSError:
                pass
        return out

    def qmgr_pid(self, timeout=30):
        return pi.wait_until(lambda: (self.pids_named("qmgr") or [None])[0], timeout,
                             what=f"{self.name} qmgr")

    def remember_tree(self):
        """Note the instance's processes (pid and start time), so that
        kill_remembered can end any of them that outlive their master."""
        self._known = {p: start_time(p) for p in self.tree()}

    def kill_remembered(self):
        """Last resort: SIGKILL the processes remember_tree saw (and any
        live descendants of the master), if they are still the same
        processes."""
        known = dict(getattr(self, "_known", {}))
        known.update({p: start_time(p) for p in self.tree()})
        def still_ours(pid, born):
            st = read_stat(pid)
            return born is not None and start_time(pid) == born and st is not None and st[2] != "Z"

        for _ in range(3):
            alive = [p for p, t in known.items() if still_ours(p, t)]
            if not alive:
                return
            pi.kill_pids(alive, signal.SIGKILL)
            time.sleep(0.2)


class Postern(MTA):
    name = "postern"

    def __init__(self, port, relay_port=None, extra=(), extra_master=""):
        relay = relay_port if relay_port else CLOSED_PORT
        self.inst = pi.Instance(port, root=fresh_root("pebench."), extra_main=[
            "local_destination_concurrency_limit = 20",
            # Postfix's side does no alias or .forward lookups either.
            "alias_maps =",
            "forward_path =",
            f"relayhost = [127.0.0.1]:{relay}",
            *extra,
        ])
        if extra_master:
            with open(self.inst.etc / "master.cf", "a") as f:
                f.write(extra_master)
        self.port, self.root = port, self.inst.root
        self.queue, self.mail, self.etc = self.inst.queue, self.inst.mail, self.inst.etc

    def start(self):
        self.inst.start()

    def master_pid(self):
        # The pid file, not a process-table scan: master's children are
        # also called "master" for a moment between fork and exec.
        return pid_from_file(self.queue / "pid" / "master.pid")

    def queued(self):
        return count_tree(self.queue, ("incoming", "active", "deferred"))

    def deferred(self):
        return count_tree(self.queue, ("deferred",))

    def postqueue_argv(self):
        return [POSTERN_QUEUE, "-c", self.etc, "-p"]

    def env(self):
        return pi.clean_env()

    def stop(self):
        self.inst.stop(timeout=60)

    def cleanup(self, keep=False):
        self.inst.cleanup(keep=keep)

    def log_tail(self, n=40):
        return self.inst.log_tail(n)


class Postfix(MTA):
    name = "postfix"

    def __init__(self, port, relay_port=None, smtpd_maxproc=100, extra=()):
        self.port = port
        self.root = fresh_root("pfbench.")
        self.etc, self.queue = self.root / "etc", self.root / "queue"
        self.data, self.mail = self.root / "data", self.root / "mail"
        self.log = self.root / "log" / "maillog"
        for d in (self.etc, self.queue, self.data, self.mail, self.log.parent):
            d.mkdir(parents=True)
        owner = pwd.getpwnam("postfix")
        # postlogd opens the log as root, but postsuper appends to it
        # after dropping to mail_owner.
        for d in (self.data, self.mail, self.log.parent):
            os.chown(d, owner.pw_uid, owner.pw_gid)
        relay = relay_port if relay_port else CLOSED_PORT
        self.write_main_cf(owner, relay, extra)
        self.write_master_cf(smtpd_maxproc)

    def write_main_cf(self, owner, relay, extra):
        grp.getgrnam("postdrop")   # the setgid group must exist (Debian's package makes it)
        lines = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue}",
            f"data_directory = {self.data}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            f"myhostname = {pi.HOSTNAME}",
            "mydestination = $myhostname",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "alias_maps =",
            "alias_database =",
            f"maillog_file = {self.log}",
            "maillog_file_prefixes = /tmp",
            "virtual_mailbox_domains = localhost",
            f"virtual_mailbox_base = {self.mail}",
            f"virtual_mailbox_maps = inline:{{ {LOCAL_RCPT}={RECIPIENT_USER}/ }}",
            f"virtual_uid_maps = static:{owner.pw_uid}",
            f"virtual_gid_maps = static:{owner.pw_gid}",
            f"relayhost = [127.0.0.1]:{relay}",
            "smtp_dns_support_level = disabled",
            "in_flow_delay = 0s",
            "biff = no",
        ]
        # A scenario's setting replaces the default one (Postfix would warn
        # about a parameter set twice).
        names = {line.split("=", 1)[0].strip() for line in extra}
        lines = [line for line in lines if line.split("=", 1)[0].strip() not in names]
        lines += list(extra)
        (self.etc / "main.cf").write_text("\n".join(lines) + "\n")

    def write_master_cf(self, smtpd_maxproc):
        # Debian's services, chroot off (the queue directory is a temporary
        # one without the files a chroot needs).
        (self.etc / "master.cf").write_text(f"""\
127.0.0.1:{self.port} inet n - n - {smtpd_maxproc} smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")

    def env(self):
        env = pi.clean_env()
        env["MAIL_CONFIG"] = str(self.etc)
        return env

    def postfix(self, *args, timeout=60):
        return run_quiet([POSTFIX, "-c", self.etc, *args], timeout, env=self.env())

    def start(self):
        rc, out = self.postfix("start")
        if rc != 0:
            raise AssertionError(f"postfix start exited {rc}:\n{out}\n{self.log_tail()}")
        pi.wait_port(self.port, 30)

    def master_pid(self):
        return pid_from_file(self.queue / "pid" / "master.pid")

    def queued(self):
        return count_tree(self.queue, ("maildrop", "incoming", "active", "deferred"))

    def deferred(self):
        return count_tree(self.queue, ("deferred",))

    def postqueue_argv(self):
        return [POSTFIX_QUEUE, "-c", self.etc, "-p"]

    def postsuper(self, *args, timeout=600):
        return run_quiet([POSTFIX_SUPER, "-c", self.etc, *args], timeout, env=self.env())

    def stop(self):
        pid = self.master_pid()
        self.remember_tree()
        self.postfix("stop", timeout=60)
        if pid:
            pi.wait_until(lambda: read_stat(pid) is None, 30, interval=0.1,
                          what="the Postfix master to exit")

    def cleanup(self, keep=False):
        try:
            if self.master_pid():
                try:
                    self.stop()
                except AssertionError:
                    pass
        finally:
            self.kill_remembered()
            if not keep:
                shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n=40):
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no maillog)"
        return "--- postfix maillog tail ---\n" + "\n".join(lines[-n:])


def make(kind, port, relay_port=None, sessions=20, setup=None):
    """An MTA configured for a scenario; setup (peers.RunSetup) adds a
    scenario's main.cf and master.cf lines and its delivery counter."""
    main = setup.main if setup else ()
    if kind == "postern":
        m = Postern(port, relay_port, extra=main, extra_master=setup.master if setup else "")
    else:
        # Postfix's master.cf already lists every service a scenario uses.
        m = Postfix(port, relay_port, smtpd_maxproc=max(100, sessions + 20), extra=main)
    if setup:
        m.counter = setup.count
        if setup.prepare:
            setup.prepare(m)
    return m

