"""A system-mode Postern for the root-only tests (test_system_*.py): real
accounts made for the test, `make install` into a scratch DESTDIR, the
configuration pointed at it with postconf -e, `postern check` creating
mail_owner and setgid_group, and master started by root on a free port.

Everything the test makes is removed at the end, even on failure: its
processes (found by the config directory on their command lines), its
users and groups, and the DESTDIR. Account names are random, so two runs at
the same time do not meet."""

import fcntl
import os
import pwd
import grp
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from postern_instance import (HOSTNAME, MAKE_VARS, REPO, clean_env, free_port, is_alive,
                              kill_pids, pids_mentioning, run_logged, wait_port, wait_until)

ACCOUNT_TOOL_TRIES = 20   # useradd/userdel fail while another holds /etc/passwd's lock


def account_tool(*argv):
    """Run useradd/groupadd/userdel/groupdel, retrying while the account
    files are locked by someone else. Returns (rc, output)."""
    rc, out = 1, ""
    for _ in range(ACCOUNT_TOOL_TRIES):
        rc, out = run_logged(list(argv), 30)
        if rc == 0 or "lock" not in out:
            return rc, out
        time.sleep(0.25)
    return rc, out


def uid_of(pid):
    """Real uid of a process (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class SystemInstall:
    """A DESTDIR install run by root with its own mail_owner.

    .dest .etc .sbin .libexec .queue .spool .log .port .owner .group
    .recipient .outsider (account names) and helpers below."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.owner = f"pst{tag}"       # mail_owner, created by postern check
        self.group = f"psd{tag}"       # setgid_group, created by postern check
        self.recipient = f"prc{tag}"   # a local user mail is delivered to
        self.outsider = f"pou{tag}"    # an unprivileged user with a shell
        self.users = []                # what teardown removes
        self.groups = []
        self.dest = Path(tempfile.mkdtemp(prefix="psys.", dir="/tmp"))
        # Unprivileged users (mail_owner included) must traverse the path.
        os.chmod(self.dest, 0o755)
        self.etc = self.dest / "etc" / "postern"
        self.sbin = self.dest / "usr" / "sbin"
        self.libexec = self.dest / "usr" / "libexec" / "postern"
        self.queue = self.dest / "var" / "spool" / "postern"
        self.spool = self.dest / "var" / "mail"
        self.log = self.dest / "var" / "log" / "postern.log"
        self.home = self.dest / "home"
        self.port = free_port()

    # --- setting up ---

    def make_install(self):
        # -o all: the e2e suite runs after the build; do not rebuild here.
        return run_logged(["make", "-s", "-o", "all", "install", f"DESTDIR={self.dest}",
                           "PREFIX=/usr", f"SETGID_GROUP={self.group}", *MAKE_VARS], 120,
                          cwd=str(REPO))

    def make_links(self):
        """install-sendmail-links into DESTDIR dest/links (returned): as if
        installed with PREFIX=/usr/local, so /usr/sbin/sendmail is a link."""
        links = self.dest / "links"
        rc, out = run_logged(["make", "-s", "install-sendmail-links", f"DESTDIR={links}",
                              "PREFIX=/usr/local"], 60, cwd=str(REPO))
        return rc, out, links

    def add_user(self, name):
        self.home.mkdir(mode=0o755, exist_ok=True)
        rc, out = account_tool("/usr/sbin/useradd", "--create-home", "--home-dir",
                               str(self.home / name), "--shell", "/bin/sh", "--user-group",
                               name)
        assert rc == 0, out
        self.users.append(name)
        self.groups.append(name)
        return pwd.getpwnam(name)

    def configure(self, chroot_services=()):
        """Point the installed main.cf at the DESTDIR and master.cf at our
        port; chroot_services get "y" in the chroot column."""
        (self.dest / "etc" / "aliases").write_text("postmaster: root\n")
        self.spool.mkdir(parents=True, exist_ok=True)
        os.chmod(self.spool, 0o1777)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        rc, out = self.postconf(
            "-e",
            f"queue_directory = {self.queue}",
            f"daemon_directory = {self.libexec}",
            f"command_directory = {self.sbin}",
            f"mail_spool_directory = {self.spool}",
            f"maillog_file = {self.log}",
            f"mail_owner = {self.owner}",
            f"setgid_group = {self.group}",
            f"myhostname = {HOSTNAME}",
            "mydestination = localhost, $myhostname",
            "mynetworks = 127.0.0.1/32",
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            # postern check builds it (newaliases), as an install would.
            f"alias_maps = cdb:{self.dest}/etc/aliases",
            f"alias_database = cdb:{self.dest}/etc/aliases",
            # Mail for other domains goes to a port nobody listens on: the
            # remote agent runs, the message waits in deferred/.
            f"relayhost = [127.0.0.1]:{free_port()}",
        )
        assert rc == 0, out
        lines = []
        for line in (self.etc / "master.cf").read_text().splitlines():
            cols = line.split()
            if cols[:2] == ["smtp", "inet"]:
                cols[0] = f"127.0.0.1:{self.port}"
            if len(cols) >= 8 and not line.startswith("#") and not line[0].isspace():
                if cols[0] in chroot_services or (cols[0].startswith("127.0.0.1:")
                                                  and "smtp" in chroot_services):
                    cols[4] = "y"
                line = " ".join(cols)
            lines.append(line)
        (self.etc / "master.cf").write_text("\n".join(lines) + "\n")

    # --- running things ---

    def env(self):
        return clean_env()

    def postern(self, *args, timeout=60):
        return run_logged([str(self.sbin / "postern"), "-c", str(self.etc), *args], timeout,
                          env=self.env())

    def postconf(self, *args):
        return run_logged([str(self.sbin / "postconf"), "-c", str(self.etc), *args], 30,
                          env=self.env())

    def as_user(self, user, argv, timeout=30, stdin=None):
        """Run argv as user (runuser, no shell); returns (rc, output)."""
        full = ["runuser", "-u", user, "--", *map(str, argv)]
        proc = subprocess.run(full, input=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, env=self.env())
        return proc.returncode, proc.stdout.decode("utf-8", "replace")

    def as_user_default_config(self, user, argv, timeout=30):
        """Run argv as user with this install's configuration at the
        compiled-in /etc/postern: set-gid postqueue rightly refuses -c from
        an ordinary user. The bind mount lives in a private mount namespace;
        the host's /etc/postern is at most created empty for the mount
        point and removed again (under a lock, for parallel runs)."""
        with open("/tmp/postern-e2e-etc-postern.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            made = not os.path.exists("/etc/postern")
            if made:
                os.mkdir("/etc/postern", 0o755)
            try:
                script = 'mount --bind "$1" /etc/postern && shift && exec runuser -u "$@"'
                proc = subprocess.run(
                    ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                     script, "sh", str(self.etc), user, "--", *map(str, argv)],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                    env=self.env())
            finally:
                if made:
                    try:
                        os.rmdir("/etc/postern")
                    except OSError:
                        pass
        return proc.returncode, proc.stdout.decode("utf-8", "replace")

    def start(self):
        rc, out = self.postern("start")
        assert rc == 0, f"postern start: {out}\n{self.log_tail()}"
        wait_port(self.port, 15)

    def live_pids(self):
        return [p for p in pids_mentioning(self.etc) if is_alive(p)]

    def processes(self):
        """{program: [(pid, uid)]} of the instance's live processes."""
        out = {}
        for pid in self.live_pids():
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            out.setdefault(os.path.basename(argv0), []).append((pid, uid_of(pid)))
        return out

    def log_tail(self, n=60):
        try:
            return "--- maillog tail ---\n" + "\n".join(
                self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no maillog)"

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, needle, timeout=30):
        wait_until(lambda: needle in self.log_text(), timeout, interval=0.1,
                   what=f"log text {needle!r}")

    # --- tearing down ---

    def cleanup(self):
        try:
            if self.live_pids():
                try:
                    self.postern("stop", timeout=40)
                except AssertionError:
                    pass
            for _ in range(5):
                pids = self.live_pids()
                if not pids:
                    break
                kill_pids(pids)
                time.sleep(0.2)
        finally:
            for user in [self.owner] + self.users:
                try:
                    pwd.getpwnam(user)
                except KeyError:
                    continue
                account_tool("/usr/sbin/userdel", user)
            for group in [self.group, self.owner] + self.groups:
                try:
                    grp.getgrnam(group)
                except KeyError:
                    continue
                account_tool("/usr/sbin/groupdel", group)
            if not os.environ.get("POSTERN_E2E_KEEP"):
                shutil.rmtree(self.dest, ignore_errors=True)
