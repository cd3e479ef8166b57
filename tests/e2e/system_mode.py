"""System mode for the end-to-end tests (docs/DESIGN.md, "Processes and
privileges"): master started by root with a dedicated non-root mail_owner,
and real recipient accounts, so that local has to switch to each user.

Every account is made for one test with useradd and removed with
`userdel -r` afterwards, even when the test fails; names are random so that
parallel runs never collide. The instance is the usual Instance (its own
directory under /tmp, a free port, `postern start`) with the ownership
system mode needs: the instance directory is traversable, the maillog
belongs to mail_owner (unprivileged daemons append to it), the mail spool
is root's (as /var/mail is), and the alias database is built with the real
`postalias`.

These tests need root; without it they fail.
"""

import os
import pwd
import random
import secrets
import time
from pathlib import Path

import pytest

from postern_instance import BUILD, Instance, free_port, run_logged

POSTALIAS = BUILD / "bin" / "postalias"
POSTMAP = BUILD / "bin" / "postmap"

# System mode needs root; make check runs as root (as CI does), and a run
# without it fails (conftest.py's require_root) rather than passing on skips.
needs_root = pytest.mark.usefixtures("require_root")


def run_ok(argv, timeout=30):
    rc, out = run_logged([str(a) for a in argv], timeout)
    assert rc == 0, f"{' '.join(map(str, argv))} exited {rc}:\n{out}"
    return out


def run_account_tool(argv, deadline=60):
    """useradd/userdel, retried while another process holds the passwd
    lock (other tests may add users at the same time)."""
    end = time.monotonic() + deadline
    while True:
        rc, out = run_logged([str(a) for a in argv], 30)
        if rc == 0 or "lock" not in out or time.monotonic() > end:
            return rc, out
        time.sleep(0.2 + random.random() * 0.3)


class Accounts:
    """Users made with useradd for one test; cleanup() removes them."""

    def __init__(self):
        self.names = []

    def _add(self, name, argv):
        rc, out = run_account_tool(argv + [name])
        assert rc == 0, f"{' '.join(argv)} {name} exited {rc}:\n{out}"
        self.names.append(name)
        return pwd.getpwnam(name)

    def mail_owner(self):
        name = "pmo" + secrets.token_hex(4)
        return self._add(name, ["useradd", "-r", "-M", "-d", "/nonexistent",
                                "-s", "/usr/sbin/nologin"])

    def login(self, prefix):
        """A user with a home directory (mode 0700 as useradd makes it)."""
        name = prefix + secrets.token_hex(3)
        return self._add(name, ["useradd", "-m", "-s", "/bin/sh"])

    def cleanup(self):
        for name in reversed(self.names):
            run_account_tool(["userdel", "-r", "-f", name])
        self.names = []


class SystemInstance(Instance):
    """An Instance run by root for mail_owner `owner` (a pwd entry)."""

    def __init__(self, port, owner, extra_main=()):
        super().__init__(port)
        self.owner = owner
        self.aliases = self.etc / "aliases"
        os.chmod(self.root, 0o755)
        os.chown(self.log.parent, owner.pw_uid, owner.pw_gid)
        self.log.touch()
        os.chown(self.log, owner.pw_uid, owner.pw_gid)
        os.chmod(self.mail, 0o755)
        # Bounces to the tests' remote senders must not reach for DNS or the
        # network: everything not local goes to a port where nobody listens.
        self.append_main_cf(f"mail_owner = {owner.pw_name}",
                            f"relayhost = [127.0.0.1]:{free_port()}",
                            f"alias_maps = cdb:{self.aliases}",
                            f"alias_database = cdb:{self.aliases}",
                            *extra_main)
        self.write_aliases("")

    def write_aliases(self, text, owner=None):
        """Write the alias source and build it with postalias; owner (a pwd
        entry) gets both files, which makes alias commands run as owner."""
        self.aliases.write_text(text)
        run_ok([POSTALIAS, "-c", self.etc, self.aliases])
        if owner is not None:
            for p in (self.aliases, Path(f"{self.aliases}.cdb")):
                os.chown(p, owner.pw_uid, owner.pw_gid)

    def mbox(self, user):
        return self.mail / user


@pytest.fixture
def system_mode():
    """(accounts, make) where make(extra_main=(), start=True) returns a
    SystemInstance; instances are stopped and accounts removed at the end."""
    accounts = Accounts()
    made = []
    owner = None

    def make(extra_main=(), start=True):
        nonlocal owner
        if owner is None:
            owner = accounts.mail_owner()
        inst = SystemInstance(free_port(), owner, extra_main)
        made.append(inst)
        if start:
            inst.start()
        return inst

    try:
        yield accounts, make
    finally:
        for inst in made:
            print(f"instance {inst.root} (port {inst.port})")
            print(inst.log_tail(80))
            inst.cleanup()
        accounts.cleanup()
