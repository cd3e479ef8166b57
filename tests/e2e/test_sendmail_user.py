"""Submission by ordinary users through a set-gid postdrop, with the mail
system stopped (issue 4 acceptance: "Run as an ordinary user: submission
works; the user cannot read or remove another user's maildrop files" and
"Master stopped: sendmail still exits 0, the file waits in maildrop, and is
delivered once master starts").

The instance runs in instance mode as root, so the test sets up what
queue_dirs_create does in system mode: maildrop/ (1730) and public/ (0710)
belong to group postdrop, and postdrop is a set-gid postdrop copy in a
directory of its own, next to a copy of sendmail (which runs the postdrop
beside it). Two system users are created once (useradd -r) if missing.
"""

import grp
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from postern_instance import HOSTNAME
from sendmail_helpers import (EX_NOPERM, POSTDROP, SENDMAIL, header_values, maildrop_files,
                              run_sendmail)

USERS = ("pe2e-submit1", "pe2e-submit2")

# Needs root to create users and a set-gid postdrop: fails without it.
pytestmark = pytest.mark.usefixtures("require_root")


def ensure_group(name):
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "-r", name], check=True, timeout=30)
        return grp.getgrnam(name).gr_gid


def ensure_user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-r", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
                        "-c", "Postern test user", name], check=True, timeout=30)
        return pwd.getpwnam(name)


def as_user(pw, argv, **kw):
    return subprocess.run(argv, capture_output=True, timeout=20, user=pw.pw_uid,
                          group=pw.pw_gid, extra_groups=[], **kw)


@pytest.fixture
def system_drop(make_instance):
    """A stopped instance whose maildrop/ and public/ are system-mode
    shared, and a bin directory with sendmail and a set-gid postdrop."""
    inst = make_instance()
    inst.stop()
    gid = ensure_group("postdrop")
    users = [ensure_user(u) for u in USERS]
    os.chmod(inst.root, 0o755)
    for sub, mode in (("maildrop", 0o1730), ("public", 0o710)):
        os.chown(inst.queue / sub, 0, gid)
        os.chmod(inst.queue / sub, mode)
    bindir = Path(tempfile.mkdtemp(prefix="pe2e-bin.", dir="/tmp"))
    try:
        os.chmod(bindir, 0o755)
        shutil.copy(SENDMAIL, bindir / "sendmail")
        shutil.copy(POSTDROP, bindir / "postdrop")
        os.chown(bindir / "postdrop", 0, gid)
        os.chmod(bindir / "postdrop", 0o2755)
        yield inst, bindir, users, gid
    finally:
        shutil.rmtree(bindir, ignore_errors=True)


def test_users_submit_while_master_is_down_and_cannot_touch_each_others_files(system_drop):
    inst, bindir, (u1, u2), gid = system_drop
    maildrop = inst.queue / "maildrop"
    r = run_sendmail(inst, ["bob"], "Subject: from user one\n\none\n",
                     sendmail=bindir / "sendmail", user=(u1.pw_uid, u1.pw_gid))
    assert (r.returncode, r.stderr) == (0, b"")
    [mine] = maildrop_files(inst)
    st = mine.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (u1.pw_uid, gid, 0o444)
    assert [p.name for p in maildrop.iterdir()] == [mine.name]   # no temporary file left

    # The other user can neither list, read nor remove it, not even by name.
    for argv in (["ls", str(maildrop)], ["cat", str(mine)], ["rm", "-f", str(mine)]):
        denied = as_user(u2, argv)
        assert denied.returncode != 0 and b"Permission denied" in denied.stderr, (argv, denied)
    assert mine.exists()
    r = run_sendmail(inst, ["bob"], "Subject: from user two\n\ntwo\n",
                     sendmail=bindir / "sendmail", user=(u2.pw_uid, u2.pw_gid))
    assert r.returncode == 0, r.stderr
    assert len(maildrop_files(inst)) == 2 and mine.exists()

    # Once master runs, pickup delivers both and says who sent them.
    inst.start()
    files = inst.wait_delivered("bob", 2)
    senders = sorted(header_values(f.read_bytes(), "Return-Path")[0] for f in files)
    assert senders == sorted(f"<{u.pw_name}@{HOSTNAME}>" for u in (u1, u2)), senders
    for u in (u1, u2):
        inst.wait_log(rf"^\w+: uid={u.pw_uid} from=<{re.escape(u.pw_name)}>$", program="pickup")
    assert maildrop_files(inst) == []


def test_postdrop_refuses_a_configuration_the_user_controls(system_drop):
    inst, bindir, (u1, _), _ = system_drop
    own = Path(tempfile.mkdtemp(prefix="pe2e-cf.", dir="/tmp"))
    try:
        shutil.copy(inst.etc / "main.cf", own / "main.cf")
        for p in (own, own / "main.cf"):
            os.chown(p, u1.pw_uid, u1.pw_gid)
        r = run_sendmail(inst, ["bob"], "Subject: sneaky\n\nx\n", sendmail=bindir / "sendmail",
                         user=(u1.pw_uid, u1.pw_gid), MAIL_CONFIG=str(own))
        assert r.returncode == EX_NOPERM, r
        assert b"is not trusted" in r.stderr, r.stderr
        assert list((inst.queue / "maildrop").iterdir()) == []
    finally:
        shutil.rmtree(own, ignore_errors=True)
