"""A private Dovecot for the SASL and LMTP tests: `dovecot -F -c CONF` with a
configuration written into its own directory under /tmp (base_dir,
state_dir, log_path, the mail store), never the system's Dovecot or its
configuration.

Users live in a passwd-file passdb with {PLAIN} passwords; the static
userdb gives every mailbox one uid and gid: the running user's, or the
`mail` account's when that is root (Dovecot refuses to deliver mail as
uid 0). Without allow_all_users the static userdb asks the passdb whether
a user exists, so LMTP refuses unknown recipients with 5.1.1.

Auth listens on a UNIX socket (`auth_socket`) and on 127.0.0.1:`auth_port`,
LMTP on `lmtp_socket` and 127.0.0.1:`lmtp_port`. stop() ends the whole
process group the fixture started (Dovecot's children included) and waits
until the sockets refuse connections; start() brings it back with the same
configuration, sockets and mail.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from postern_instance import free_port

USERS = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw",
         "carol@example.com": "carol-pw"}


def mail_ids():
    """(uid, gid) the mailboxes belong to."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    pw = pwd.getpwnam("mail")
    return pw.pw_uid, pw.pw_gid


class Dovecot:
    def __init__(self, users=None, mechanisms="plain login cram-md5"):
        self.root = Path(tempfile.mkdtemp(prefix="pdv.", dir="/tmp"))
        self.users = dict(users or USERS)
        self.conf = self.root / "dovecot.conf"
        self.log = self.root / "dovecot.log"
        self.mail = self.root / "mail"
        self.auth_socket = self.root / "auth"
        self.lmtp_socket = self.root / "lmtp"
        self.auth_port, self.lmtp_port = free_port(), free_port()
        self.uid, self.gid = mail_ids()
        self.proc = None
        # The mail uid must reach its Maildirs under the mkdtemp directory.
        os.chmod(self.root, 0o755)
        self.mail.mkdir()
        os.chown(self.mail, self.uid, self.gid)
        self.write_passwd()
        self.conf.write_text(self.config(mechanisms))

    def write_passwd(self):
        (self.root / "passwd").write_text(
            "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self.users.items()))

    def config(self, mechanisms):
        r = self.root
        return f"""\
base_dir = {r}/run
state_dir = {r}/state
log_path = {self.log}
instance_name = pdv{os.getpid()}-{r.name[-6:]}
protocols = lmtp
ssl = no
first_valid_uid = 0
default_internal_user = root
default_login_user = root
auth_mechanisms = {mechanisms}
auth_verbose = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/passwd
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.mail}/%d/%n
}}
mail_location = maildir:{self.mail}/%d/%n
service auth {{
  unix_listener {self.auth_socket} {{
    mode = 0666
  }}
  inet_listener {{
    address = 127.0.0.1
    port = {self.auth_port}
  }}
}}
service lmtp {{
  unix_listener {self.lmtp_socket} {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
"""

    # --- running ----------------------------------------------------------

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.lmtp_port), timeout=1):
                pass
            with socket.create_connection(("127.0.0.1", self.auth_port), timeout=1):
                pass
            for path in (self.auth_socket, self.lmtp_socket):
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(1)
                    s.connect(str(path))
            return True
        except OSError:
            return False

    def start(self):
        if self.running():
            return self
        out = open(self.root / "dovecot.out", "ab")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     start_new_session=True)
        out.close()
        deadline = time.monotonic() + 20
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("dovecot did not start:\n" + self.log_tail())
            time.sleep(0.05)
        return self

    def _group_alive(self, pgid):
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False

    def stop(self):
        """End Dovecot and every child of it (one process group)."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while self._group_alive(pgid) and time.monotonic() < deadline:
                self.proc.poll()
                time.sleep(0.05)
            if not self._group_alive(pgid):
                break
        self.proc.wait(timeout=10)
        self.proc = None
        # A stale master.pid would make the next start refuse.
        (self.root / "run" / "master.pid").unlink(missing_ok=True)

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n=40):
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no dovecot log)"

    # --- mailboxes ---------------------------------------------------------

    def maildir(self, user):
        local, domain = user.split("@")
        return self.mail / domain / local

    def messages(self, user):
        """The files of user's INBOX (new/ and cur/), oldest name first."""
        out = []
        for sub in ("new", "cur"):
            d = self.maildir(user) / sub
            if d.is_dir():
                out += [p for p in d.iterdir() if p.is_file()]
        return sorted(out, key=lambda p: p.name)

    def wait_messages(self, user, count, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.messages(user)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{user} has {len(self.messages(user))} of {count} "
                                     f"messages\n{self.log_tail()}")
            time.sleep(0.05)
        return self.messages(user)

    def doveadm(self, *args):
        r = subprocess.run(["doveadm", "-c", str(self.conf), *args], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout + r.stderr
