"""The shared peers of bench scenarios (e) to (h) (bench.py): one private
peer per scenario, started by the bench and used alike by both MTAs.

  tls    a self-signed certificate; both smtpd offer STARTTLS with it
  dkim   one OpenDKIM (tests/e2e/milter_peers.py) signing every message,
         reached by both as smtpd_milters = inet:127.0.0.1:PORT
  lmtp   one Dovecot (tests/e2e/dovecot_fixture.py); both deliver with
         virtual_transport = lmtp:unix:DOVECOT/lmtp
  pgsql  one PostgreSQL (tests/e2e/table_servers.py) holding
         virtual_mailbox_maps, read by both through proxy:pgsql:, and
         delivered by each MTA's virtual(8) into a Maildir

Each measured run gets a recipient of its own (`for_run`): a run never
shares a mailbox (and the Maildir scans or index updates that come with
it) with an earlier one, and counts only its own messages.
"""

import os
import pwd
import tempfile
from pathlib import Path

import mta as mtamod

VDOMAIN = "vbench.example"
MAX_RUN_USERS = 64   # recipients prepared up front (Dovecot's passwd file, the SQL rows)


class RunSetup:
    """What one measured run of one MTA needs: recipient, sender, main.cf
    and master.cf additions, and how to count its delivered messages."""

    def __init__(self, rcpt=mtamod.LOCAL_RCPT, sender=mtamod.SENDER, main=(), master="",
                 count=None, prepare=None):
        self.rcpt, self.sender = rcpt, sender
        self.main, self.master = list(main), master
        self.count = count       # callable(mta) -> delivered so far, or None: mta.delivered()
        self.prepare = prepare   # callable(mta) before it starts, or None


class Peer:
    """No peer: scenarios (a) to (d)."""

    def start(self):
        return self

    def close(self):
        pass

    def for_run(self, kind, n):
        return RunSetup()

    def pid(self):
        """The peer's root process (its CPU is reported apart), or None."""
        return None


class TLS(Peer):
    """A certificate for both smtpd; the load is TLS sessions (load.py)."""

    def start(self):
        from smtpd_fixture import make_cert
        self.dir = Path(tempfile.mkdtemp(prefix="pbtls.", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.cert, self.key = make_cert(self.dir)
        return self

    def close(self):
        import shutil
        if hasattr(self, "dir"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def for_run(self, kind, n):
        main = [f"smtpd_tls_cert_file = {self.cert}", f"smtpd_tls_key_file = {self.key}",
                "smtpd_tls_security_level = may"]
        return RunSetup(main=main)


class DKIM(Peer):
    """One OpenDKIM in sign+verify mode; mail from its domain, from
    127.0.0.1 (InternalHosts), is signed."""

    def start(self):
        from milter_peers import OpenDKIM
        self.dkim = OpenDKIM()
        return self

    def close(self):
        if hasattr(self, "dkim"):
            self.dkim.close()

    def pid(self):
        return self.dkim.proc.pid

    def for_run(self, kind, n):
        return RunSetup(sender=f"sender@{self.dkim.DOMAIN}",
                        main=[f"smtpd_milters = {self.dkim.spec}"])


def run_user(n):
    return f"bench{n}@{VDOMAIN}"


class LMTP(Peer):
    """One Dovecot, LMTP on a UNIX socket; each run its own mailbox."""

    def start(self):
        from dovecot_fixture import Dovecot
        self.dovecot = Dovecot(users={run_user(n): "pw" for n in range(MAX_RUN_USERS)})
        self.dovecot.start()
        return self

    def close(self):
        if hasattr(self, "dovecot"):
            self.dovecot.cleanup()

    def pid(self):
        return self.dovecot.proc.pid

    def for_run(self, kind, n):
        rcpt = run_user(n)
        main = [f"virtual_mailbox_domains = {VDOMAIN}",
                f"virtual_mailbox_maps = inline:{{ {rcpt}=x }}",
                f"virtual_transport = lmtp:unix:{self.dovecot.lmtp_socket}"]
        return RunSetup(rcpt=rcpt, main=main, master="lmtp unix - - n - - lmtp\n",
                        count=lambda _m: len(self.dovecot.messages(rcpt)))


class PgSQL(Peer):
    """One PostgreSQL holding the mailbox table; both MTAs look it up
    through proxy:pgsql: and deliver with their virtual(8) into
    ROOT/vmail/DOMAIN/USER/."""

    def start(self):
        from table_servers import Postgres
        self.root = Path(tempfile.mkdtemp(prefix="pbpg.", dir="/tmp"))
        self.pg = Postgres(self.root)
        self.pg.start()
        rows = ",".join(f"('{run_user(n)}', '{VDOMAIN}/bench{n}/', 1)"
                        for n in range(MAX_RUN_USERS))
        self.pg.psql(f"INSERT INTO mailbox VALUES {rows};", db=self.pg.DB)
        self.cf = self.root / "vmailbox.cf"
        # A URI: the server's port is not the default one, and both MTAs
        # read it (Postern also takes unix:SOCKET, Postfix does not).
        uri = (f"postgresql://{self.pg.USER}@/{self.pg.DB}?host={self.pg.sockdir}"
               f"&port={self.pg.port}")
        self.cf.write_text(self.pg.cf(
            "query = SELECT maildir FROM mailbox WHERE email = '%s' AND active = 1",
            hosts=uri))
        os.chmod(self.root, 0o755)
        os.chmod(self.cf, 0o644)
        return self

    def pid(self):
        try:
            return int((self.pg.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def close(self):
        import shutil
        try:
            if hasattr(self, "pg") and hasattr(self.pg, "data"):   # data: it started
                self.pg.stop()
        finally:
            if hasattr(self, "root"):
                shutil.rmtree(self.root, ignore_errors=True)

    def for_run(self, kind, n):
        owner = pwd.getpwnam("postfix")
        main = [f"virtual_mailbox_domains = {VDOMAIN}",
                f"virtual_mailbox_maps = proxy:pgsql:{self.cf}",
                f"virtual_uid_maps = static:{owner.pw_uid}",
                f"virtual_gid_maps = static:{owner.pw_gid}"]
        return RunSetup(rcpt=run_user(n), main=main, prepare=self.prepare,
                        count=lambda m: mtamod.count_files(m.mail / VDOMAIN / f"bench{n}" / "new"))

    @staticmethod
    def prepare(m):
        """The Maildirs go under the run's own mail directory, written as
        the postfix user (Postfix's side already has both)."""
        owner = pwd.getpwnam("postfix")
        os.chown(m.mail, owner.pw_uid, owner.pw_gid)
        if m.name == "postern":
            m.inst.append_main_cf(f"virtual_mailbox_base = {m.mail}")


PEERS = {"tls": TLS, "dkim": DKIM, "lmtp": LMTP, "pgsql": PgSQL}


def started(name):
    """The peer of a scenario, started; on failure whatever it had started
    is stopped and removed again."""
    peer = PEERS[name]() if name else Peer()
    try:
        return peer.start()
    except BaseException:
        peer.close()
        raise
