"""System mode, as root: `make install` into a scratch DESTDIR, `postern
check` creates mail_owner and setgid_group and sets the modes, master
starts as root on a test port and every other daemon but local runs as
mail_owner (smtpd, cleanup and qmgr chrooted to the queue), local delivers
as the recipient, the queue has docs/DESIGN.md's owners and modes, an
unprivileged user can neither list incoming/ nor read a queue file but can
submit with sendmail and list the queue with mailq, and a daemon started
by hand as root refuses to run. Skipped unless run as root."""

import json
import os
import re
import stat
import pwd
import grp
import time
from pathlib import Path

import pytest

import smtplib

from postern_instance import SENDER, crlf, simple_message, wait_until
from system_install import SystemInstall, uid_of

pytestmark = pytest.mark.usefixtures("require_root")   # system mode needs root

# smtpd looks local recipients up in the password file, which a chroot
# hides (Postfix needs its proxymap for that); these two need nothing
# outside the queue.
CHROOTED = ("cleanup", "qmgr")


@pytest.fixture(scope="module")
def system():
    inst = SystemInstall()
    try:
        rc, out = inst.make_install()
        assert rc == 0, out
        inst.configure(chroot_services=CHROOTED)
        rc, out = inst.postern("check")
        inst.check_output = out
        assert rc == 0, out
        inst.recipient_pw = inst.add_user(inst.recipient)
        inst.outsider_pw = inst.add_user(inst.outsider)
        inst.start()
        yield inst
    finally:
        print(inst.log_tail(80))
        inst.cleanup()


def files_containing(roots, needle):
    """Files under roots whose bytes contain needle. Mail moves while we
    look: a file gone between listing and reading (a mailbox dotlock, a
    queue file moved on) is skipped, as is a Maildir tmp/ file still being
    written."""
    found = []
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            if Path(dirpath).name == "tmp":
                continue
            for f in files:
                try:
                    if needle in (Path(dirpath) / f).read_bytes():
                        found.append(Path(dirpath) / f)
                except FileNotFoundError:
                    pass
    return found


def mode_of(path):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def test_install_layout(system):
    for name in ("postern", "postconf"):
        assert os.access(system.sbin / name, os.X_OK), name
    for name in ("master", "smtpd", "cleanup", "qmgr", "local"):
        assert os.access(system.libexec / name, os.X_OK), name
    unit = (system.dest / "lib" / "systemd" / "system" / "postern.service").read_text()
    assert "ExecStart=/usr/sbin/postern start" in unit
    assert "PIDFile=/var/spool/postern/pid/master.pid" in unit
    # A second install keeps the edited configuration.
    before = (system.etc / "main.cf").read_text()
    rc, out = system.make_install()
    assert rc == 0, out
    assert (system.etc / "main.cf").read_text() == before
    dist = (system.etc / "main.cf.dist").read_text()
    assert "\nqueue_directory = /var/spool/postern\n" in dist
    assert "\ndaemon_directory = /usr/libexec/postern\n" in dist
    # The links point at $(PREFIX)/sbin/sendmail.
    rc, out, links = system.make_links()
    assert rc == 0, out
    for link in ("usr/sbin/sendmail", "usr/bin/mailq", "usr/bin/newaliases"):
        assert os.readlink(links / link) == "/usr/local/sbin/sendmail", link


def test_check_created_accounts(system):
    out = system.check_output
    assert f"created group {system.group}" in out, out
    assert f"created user {system.owner}" in out, out
    pw = pwd.getpwnam(system.owner)
    assert pw.pw_uid != 0 and pw.pw_shell.endswith("nologin"), pw
    assert grp.getgrnam(system.group).gr_gid != pw.pw_gid
    # ... and built the alias database a fresh install lacks.
    assert "rebuilt alias_database" in out, out
    assert (system.dest / "etc" / "aliases.cdb").exists()
    # A second check has nothing left to do.
    rc, out = system.postern("check")
    assert rc == 0 and "created" not in out and "fixed" not in out, out


def test_process_owners(system):
    owner = pwd.getpwnam(system.owner).pw_uid
    # Mail to another domain makes qmgr start the remote agent, mail to a
    # user who does not exist makes it start bounce (when they are built).
    system_send(system, ["somebody@remote.example"], "to remote")
    system_send(system, [f"{system.recipient}@localhost"], "to recipient")

    # Every daemon that is built must show up (bounce: the deferred remote
    # message is logged through the defer service).
    expected = {"master", "smtpd", "cleanup", "qmgr", "local"} | {
        p for p in ("pickup", "bounce", "remote") if os.access(system.libexec / p, os.X_OK)}

    # A daemon master has just started is root for a moment, until its
    # service_init drops to mail_owner: wait for that, then assert.
    def settled():
        procs = system.processes()
        if not expected <= set(procs):
            return None
        unsettled = [pid for prog in expected - {"master", "local"}
                     for pid, uid in procs[prog] if uid != owner]
        return None if unsettled else procs
    try:
        procs = wait_until(settled, 15, what=f"processes of {sorted(expected)} as mail_owner")
    except AssertionError:
        procs = system.processes()   # the assertions below say what is wrong
    assert [u for _, u in procs["master"]] == [0], procs
    for prog in expected - {"master", "local"}:
        for pid, uid in procs[prog]:
            assert uid == owner, (prog, pid, uid, owner)
    for pid, uid in procs["local"]:
        assert uid == 0, ("local runs as root to become each recipient", pid, uid)


def test_chroot_column(system):
    procs = system.processes()
    assert procs.get("cleanup") and procs.get("qmgr"), procs
    for prog in CHROOTED:
        for pid, _ in procs.get(prog, []):
            assert os.readlink(f"/proc/{pid}/root") == str(system.queue), (prog, pid)
    for prog in ("master", "local", "smtpd"):
        for pid, _ in procs.get(prog, []):
            assert os.readlink(f"/proc/{pid}/root") == "/", (prog, pid)


def system_send(system, rcpts, subject):
    with smtplib.SMTP("127.0.0.1", system.port, timeout=20) as s:
        s.ehlo("client.example")
        s.sendmail(SENDER, rcpts, crlf(simple_message(subject=subject)))


def test_local_delivers_as_recipient(system):
    pw = system.recipient_pw
    system_send(system, [f"{system.recipient}@localhost"], "as the recipient")

    def delivered():
        return files_containing((system.spool, Path(pw.pw_dir)), b"as the recipient")
    files = wait_until(delivered, 20, what="the delivery to the recipient")
    for f in files:
        st = os.stat(f)
        assert st.st_uid == pw.pw_uid, (f, st.st_uid, pw.pw_uid)


def test_queue_modes(system):
    owner = pwd.getpwnam(system.owner).pw_uid
    gid = grp.getgrnam(system.group).gr_gid
    q = system.queue
    assert mode_of(q)[0] == 0o755 and mode_of(q)[1] == 0
    assert mode_of(q / "maildrop") == (0o1730, owner, gid)
    mode, uid, g = mode_of(q / "public")
    assert (mode, uid, g) == (0o710, owner, gid)
    for sub in ("private", "incoming", "active", "deferred", "hold", "corrupt"):
        mode, uid, _ = mode_of(q / sub)
        assert (mode, uid) == (0o700, owner), sub
    # postdrop and postqueue are setgid setgid_group; nothing else is set-id.
    for name in ("postdrop", "postqueue"):
        if (system.sbin / name).exists():
            assert mode_of(system.sbin / name)[0] == 0o2755, name
            assert mode_of(system.sbin / name)[2] == gid, name
    for d in (system.sbin, system.libexec):
        for f in d.iterdir():
            if f.name in ("postdrop", "postqueue"):
                continue
            assert not mode_of(f)[0] & 0o6000, f


def test_outsider_cannot_see_the_queue(system):
    # A message waiting in deferred/ (the relayhost does not answer).
    system_send(system, ["waiting@remote.example"], "waits in deferred")
    deferred = wait_until(lambda: [p for p in (system.queue / "deferred").rglob("*")
                                   if p.is_file()], 30, what="a deferred message")
    rc, out = system.as_user(system.outsider, ["ls", system.queue / "incoming"])
    assert rc != 0 and "Permission denied" in out, out
    rc, out = system.as_user(system.outsider, ["cat", deferred[0]])
    assert rc != 0 and "Permission denied" in out, out
    rc, out = system.as_user(system.outsider, ["ls", system.queue / "maildrop"])
    assert rc != 0 and "Permission denied" in out, out


def test_outsider_can_submit_with_sendmail(system):
    # A program that was not built is a broken build: fail, never skip.
    for path in (system.sbin / "sendmail", system.sbin / "postdrop", system.sbin / "postqueue",
                 system.libexec / "pickup"):
        assert os.access(path, os.X_OK), f"{path} is not built"
    msg = (f"From: {system.outsider}@localhost\nTo: {system.recipient}@localhost\n"
           "Subject: from the outsider\n\nsubmitted with sendmail\n").encode()
    rc, out = system.as_user(system.outsider, [system.sbin / "sendmail", "-C", system.etc,
                                               "-i", f"{system.recipient}@localhost"],
                             stdin=msg)
    assert rc == 0, out
    pw = system.recipient_pw

    def delivered():
        return files_containing((system.spool, Path(pw.pw_dir)), b"submitted with sendmail")
    wait_until(delivered, 30, what="the message submitted by the outsider")


def test_outsider_can_list_the_queue_with_mailq(system):
    # The queue directories are mail_owner's alone (0700), so a set-gid
    # postqueue cannot read them: listing needs a daemon that runs as
    # mail_owner and answers on public/ (Postfix's showq).
    assert os.access(system.libexec / "showq", os.X_OK), "showq is not built"
    system_send(system, ["listed@remote.example"], "listed by mailq")

    def deferred_id():
        found = files_containing((system.queue / "deferred",), b"listed by mailq")
        return found[0].name if found else None
    qid = wait_until(deferred_id, 30, what="the remote message to wait in deferred/")
    # mailq = sendmail -bp, with the installed (default) configuration.
    rc, out = system.as_user_default_config(system.outsider, [system.sbin / "sendmail", "-bp"])
    assert rc == 0, out
    assert out.startswith("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n")
    assert re.search(rf"^{qid} +\d+ .* {re.escape(SENDER)}\n(.*\n)? +listed@remote\.example$",
                     out, re.M), out
    assert re.search(r"^-- \d+ Kbytes in \d+ Requests?\.$", out, re.M), out
    rc, out = system.as_user_default_config(system.outsider, [system.sbin / "postqueue", "-j"])
    assert rc == 0, out
    listed = {o["queue_id"]: o for o in map(json.loads, out.splitlines())}
    assert listed[qid]["queue_name"] == "deferred", out
    assert [r["address"] for r in listed[qid]["recipients"]] == ["listed@remote.example"]
    # The listing came from showq, running as mail_owner.
    owner = pwd.getpwnam(system.owner).pw_uid
    procs = system.processes().get("showq")
    assert procs and all(uid == owner for _, uid in procs), procs
    # Without showq the outsider gets nothing: the queue stays closed.
    sock = system.queue / "public" / "showq"
    hidden = system.queue / "public" / "showq.hidden"
    os.rename(sock, hidden)
    try:
        rc, out = system.as_user_default_config(system.outsider,
                                                [system.sbin / "postqueue", "-p"])
    finally:
        os.rename(hidden, sock)
    assert rc == 69, out
    assert "Queue report unavailable - mail system is down" in out, out
    assert qid not in out, out


def test_daemon_started_by_root_refuses(system):
    # Without master's descriptors 3-5 it exits at once (its fatal message
    # goes to syslog: the configuration, and so maillog_file, is not read
    # yet).
    for prog in ("smtpd", "cleanup", "qmgr"):
        t0 = time.monotonic()
        rc, out = system.as_user("root", [system.libexec / prog, "-c", system.etc,
                                          "-n", prog, "-t", "unix"], timeout=10)
        assert rc == 1, (prog, rc, out)
        assert time.monotonic() - t0 < 5


def test_stop_leaves_nothing(system):
    rc, out = system.postern("stop")
    assert rc == 0, out
    wait_until(lambda: not system.live_pids(), 20, what="every process to exit")
    rc, out = system.postern("status")
    assert rc == 1 and "not running" in out, out
    assert re.search(r"^deferred\s+[1-9]", out, re.M), out   # the waiting messages stay


def test_chrooted_daemons_have_the_database_clients(system):
    """SQL and LDAP client libraries are loaded when a table of their type
    is first opened (lib/util/dynlib.h); in a chroot their files are out of
    reach, so a chrooted daemon loads them before it enters the jail."""
    procs = system.processes()
    for prog in CHROOTED:
        for pid, _ in procs.get(prog, []):
            maps = Path(f"/proc/{pid}/maps").read_text()
            for lib in ("libpq.so", "libmariadb.so", "libsqlite3.so", "libldap"):
                assert lib in maps, (prog, pid, lib)
    for pid, _ in procs.get("smtpd", []):   # not chrooted: nothing loaded
        assert "libmariadb.so" not in Path(f"/proc/{pid}/maps").read_text()
