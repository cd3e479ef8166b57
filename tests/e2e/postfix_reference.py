"""A private Postfix instance: the reference for what Postern must print or
send as Postfix does (postcat, postqueue -j, the showq stream, log lines).

Debian's Postfix (3.7) runs from its own configuration and queue directory
under /tmp with `postfix -c DIR start`, on a loopback port, logging to its
own maillog_file; it never touches /etc/postfix, port 25 or the network.
Mail for any domain but its own goes to relayhost [127.0.0.1]:9, a closed
port, so it waits in deferred/ for as long as a test wants to look at it.
Starting Postfix needs root (make check runs as root).
"""

import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
from pathlib import Path

from postern_instance import (HOSTNAME, clean_env, crlf, free_port, is_alive, kill_pids,
                              parent_pid, process_table, run_logged, wait_port, wait_until)

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"
POSTCAT = shutil.which("postcat") or "/usr/sbin/postcat"
CLOSED_PORT = 9

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""


class PostfixInstance:
    """.port .root .etc .queue .log; start() stop() cleanup() send()
    wait_deferred() postqueue() postcat()."""

    def __init__(self, extra_main=(), extra_master=()):
        if os.geteuid() != 0:   # fail, never skip (tests/README.md)
            raise AssertionError("a private Postfix instance needs root: run make check as "
                                 "root, as CI does")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ppf.", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.etc, self.queue = self.root / "etc", self.root / "queue"
        self.data, self.log = self.root / "data", self.root / "log" / "maillog"
        for d in (self.etc, self.queue, self.data, self.log.parent):
            d.mkdir(parents=True)
        owner = pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")   # the setgid group Debian's package makes
        for d in (self.data, self.log.parent):
            os.chown(d, owner.pw_uid, owner.pw_gid)
        (self.etc / "main.cf").write_text("\n".join([
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue}",
            f"data_directory = {self.data}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            f"myhostname = {HOSTNAME}",
            "mydestination = $myhostname",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "alias_maps =",
            "alias_database =",
            f"maillog_file = {self.log}",
            "maillog_file_prefixes = /tmp",
            f"relayhost = [127.0.0.1]:{CLOSED_PORT}",
            "smtp_dns_support_level = disabled",
            "biff = no",
            *extra_main,
        ]) + "\n")
        (self.etc / "master.cf").write_text(MASTER_CF.format(port=self.port)
                                            + "".join(line + "\n" for line in extra_master))
        self._known = {}

    def env(self):
        env = clean_env()
        env["MAIL_CONFIG"] = str(self.etc)
        return env

    def run(self, argv, timeout=60):
        """(returncode, output) of a Postfix command for this instance."""
        return run_logged([str(a) for a in argv], timeout, env=self.env())

    def master_pid(self):
        try:
            pid = int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if is_alive(pid) else None

    def tree(self):
        """The master and its live descendants."""
        master = self.master_pid()
        if master is None:
            return []
        table = [pid for pid, _ in process_table()]
        out, frontier = [master], {master}
        while frontier:
            children = [p for p in table if parent_pid(p) in frontier and p not in out]
            out.extend(children)
            frontier = set(children)
        return out

    def start(self, wrapper=()):
        """wrapper: argv words to start Postfix under (its daemons inherit
        what they set up, a mount namespace for one)."""
        rc, out = self.run([*wrapper, POSTFIX, "-c", self.etc, "start"])
        if rc != 0:
            raise AssertionError(f"postfix start exited {rc}:\n{out}\n{self.log_tail()}")
        wait_port(self.port, 30)
        self._known = set(self.tree())

    def stop(self):
        self._known |= set(self.tree())
        if self.master_pid():
            self.run([POSTFIX, "-c", self.etc, "stop"])
            try:
                wait_until(lambda: self.master_pid() is None, 30, interval=0.1,
                           what="the Postfix master to exit")
            except AssertionError:
                pass
        alive = [p for p in self._known if is_alive(p)]
        if alive:
            kill_pids(alive, signal.SIGKILL)

    def cleanup(self):
        try:
            self.stop()
        finally:
            if not os.environ.get("POSTERN_E2E_KEEP"):
                shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n=40):
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no postfix maillog)"
        return "--- postfix maillog tail ---\n" + "\n".join(lines[-n:])

    def smtp_log(self):
        """The text of each line smtp logged, in order."""
        try:
            data = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [m.group(1) for m in (re.search(r"postfix/smtp\[\d+\]: (.*)$", line)
                                     for line in data.splitlines()) if m]

    def send(self, msg, rcpts, sender, helo="client.example", mail_options=(),
             rcpt_options=()):
        """One message over SMTP; returns the queue id from the 250 reply."""
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname=helo, timeout=30) as s:
            assert s.ehlo(helo)[0] == 250
            assert s.mail(sender, list(mail_options))[0] == 250
            for r in rcpts:
                code, resp = s.rcpt(r, list(rcpt_options))
                assert code == 250, (r, code, resp)
            code, resp = s.data(crlf(msg))
            assert code == 250, (code, resp)
            return resp.decode().rsplit(" ", 1)[1]

    def postqueue(self, *args, tz="UTC"):
        """(returncode, stdout, stderr) of Postfix's postqueue."""
        env = dict(self.env(), TZ=tz)
        p = subprocess.run([POSTQUEUE, "-c", str(self.etc), *args], capture_output=True,
                           env=env, timeout=60, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def postcat(self, *args, tz="UTC"):
        """(returncode, stdout bytes, stderr) of Postfix's postcat."""
        env = dict(self.env(), TZ=tz)
        p = subprocess.run([POSTCAT, "-c", str(self.etc), *args], capture_output=True,
                           env=env, timeout=60, stdin=subprocess.DEVNULL)
        return p.returncode, p.stdout, p.stderr.decode()

    def deferred_file(self, qid):
        """Where a deferred message's file is: Postfix hashes deferred/ by
        the first character of the id."""
        return self.queue / "deferred" / qid[0] / qid

    def wait_deferred(self, qid, timeout=30):
        """Wait until qid is in deferred/ with a reason (its first attempt
        was made); returns its postqueue -j object."""

        def deferred():
            rc, out, _ = self.postqueue("-j")
            for line in out.splitlines():
                o = json.loads(line)
                if (o["queue_id"] == qid and o["queue_name"] == "deferred"
                        and all("delay_reason" in r for r in o["recipients"])):
                    return o
            return None
        try:
            return wait_until(deferred, timeout, interval=0.2, what=f"{qid} to be deferred")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.log_tail()}")


def started_postfix(extra_main=(), extra_master=()):
    """A started PostfixInstance; the caller cleans it up. extra_master:
    master.cf lines added to MASTER_CF (tlsmgr for STARTTLS, say)."""
    pf = PostfixInstance(extra_main, extra_master)
    try:
        pf.start()
    except BaseException:
        pf.cleanup()
        raise
    return pf


@contextlib.contextmanager
def readable_tmpdir(prefix):
    """A directory under /tmp that Postfix's daemons (user postfix) can
    read, as pytest's own temporary directories (0700, root's) are not;
    removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def tls_outcome(smtp_lines, addr, rcpt=None):
    """What must be alike of the TLS of one delivery to the server at addr
    (or to rcpt, for a delivery that never got to a server), as Postern's
    or Postfix's smtp logs it, up to its status: warnings and verification
    failures whole (the port as PORT), the trust word, and the status with
    its DSN (and the reason when not sent). [] while it has no status yet."""
    out = []
    for text in smtp_lines:
        if f"[{addr}]" not in text and (rcpt is None or f"to=<{rcpt}>" not in text):
            continue
        text = re.sub(r":\d+\b", ":PORT", text, count=1)
        m = re.search(r"dsn=(\S+), status=(\w+) \((.*)\)$", text)
        if m:
            out.append(f"{m.group(2)} {m.group(1)}"
                       + ("" if m.group(2) == "sent" else f" ({m.group(3)})"))
            return out
        m = re.match(r"(\w+) TLS connection established to ", text)
        out.append(m.group(1) + " TLS" if m else text)
    return []


def wait_tls_outcomes(smtp_lines, addrs, rcpts=None, timeout=60):
    """{name: tls_outcome} for addrs {name: address} (and rcpts {name:
    recipient}), once every one has its status; smtp_lines() reads the
    log again."""
    deadline = time.monotonic() + timeout
    rcpts = rcpts or {}
    while True:
        lines = smtp_lines()
        got = {name: tls_outcome(lines, addr, rcpts.get(name)) for name, addr in addrs.items()}
        if all(got.values()):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not every delivery has a status: {got}")
        time.sleep(0.2)
