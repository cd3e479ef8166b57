"""Mailbox delivery in system mode (root master, dedicated mail_owner, real
users): Maildir under the home directory with the user's uid and mode
0600, the mbox spool as mutt and Python's mailbox module read it, locking
against a concurrent reader or writer, and the all-or-nothing append.
"""

import mailbox
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from postern_instance import SENDER, simple_message
from system_mode import needs_root, system_mode  # noqa: F401 (fixture)

pytestmark = needs_root


def delivered_line(qid, rcpt, text):
    return rf"^{qid}: to=<{re.escape(rcpt)}>, .*dsn=2\.0\.0, status=sent \({re.escape(text)}\)$"


def test_maildir_in_home_has_the_users_uid_and_mode_0600(system_mode):
    accounts, make = system_mode
    alice = accounts.login("alice")
    inst = make(["home_mailbox = Maildir/"])
    rcpt = f"{alice.pw_name}@localhost"
    qid = inst.send(simple_message("maildir"), [rcpt])
    inst.wait_log(delivered_line(qid, rcpt, "delivered to maildir"), program="local")

    maildir = Path(alice.pw_dir) / "Maildir"
    files = list((maildir / "new").iterdir())
    assert len(files) == 1
    for d in (maildir, maildir / "new", maildir / "cur", maildir / "tmp"):
        st = os.stat(d)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (alice.pw_uid, alice.pw_gid, 0o700)
    st = os.stat(files[0])
    assert (st.st_uid, st.st_gid) == (alice.pw_uid, alice.pw_gid)
    assert st.st_mode & 0o777 == 0o600
    assert list((maildir / "tmp").iterdir()) == []
    data = files[0].read_bytes()
    assert data.startswith(f"Return-Path: <{SENDER}>\nX-Original-To: {rcpt}\n"
                           f"Delivered-To: {rcpt}\n".encode()), data[:200]
    assert data.endswith(b"\n\nhello\n")
    # Nothing went to the spool.
    assert not inst.mbox(alice.pw_name).exists()


BODY = ("From the start of a line\n"
        ">From already quoted\n"
        "From\n"
        "Fromage\n"
        " From indented\n"
        "\n"
        "From \n"
        "last line\n")


def test_mbox_spool_reads_back_with_from_lines_and_quoting(system_mode):
    accounts, make = system_mode
    bob = accounts.login("bob")
    inst = make()
    rcpt = f"{bob.pw_name}@localhost"
    q1 = inst.send(simple_message("first", body=BODY), [rcpt])
    inst.wait_log(delivered_line(q1, rcpt, "delivered to mailbox"), program="local")
    q2 = inst.send(simple_message("second", body="short\n"), [rcpt], sender="")
    inst.wait_log(delivered_line(q2, rcpt, "delivered to mailbox"), program="local")

    path = inst.mbox(bob.pw_name)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (bob.pw_uid, bob.pw_gid, 0o600)
    assert not Path(f"{path}.lock").exists()

    box = mailbox.mbox(str(path), create=False)
    msgs = list(box)
    assert [m["Subject"] for m in msgs] == ["first", "second"]
    assert re.match(rf"^{re.escape(SENDER)} \w{{3}} \w{{3}} [ \d]\d \d\d:\d\d:\d\d \d{{4}}$",
                    msgs[0].get_from()), msgs[0].get_from()
    assert msgs[1].get_from().startswith("MAILER-DAEMON ")
    assert msgs[0]["Return-Path"] == f"<{SENDER}>"
    assert msgs[1]["Return-Path"] == "<>"
    assert msgs[0]["Delivered-To"] == rcpt and msgs[0]["X-Original-To"] == rcpt
    # Lines that begin "From " are quoted; nothing else changes.
    assert msgs[0].get_payload() == (BODY.replace("\nFrom the", "\n>From the")
                                     .replace("From the start", ">From the start", 1)
                                     .replace("\nFrom \n", "\n>From \n"))
    assert msgs[1].get_payload() == "short\n"
    # Each message ends with an empty line, and the file with it.
    raw = path.read_bytes()
    assert raw.count(b"\n\nFrom ") == 1 and raw.endswith(b"short\n\n")


HOLDER = r"""
import fcntl, os, sys, time
path, how = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_RDWR | os.O_APPEND)
if how == "fcntl":
    fcntl.lockf(fd, fcntl.LOCK_EX)
elif how == "flock":
    fcntl.flock(fd, fcntl.LOCK_EX)
else:
    lock = os.open(path + ".lock", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
print("locked", flush=True)
sys.stdin.readline()
# What a mail reader rewriting the box would do while holding the lock.
os.write(fd, b"From holder@example Thu Jan  1 00:00:00 2024\nSubject: holder\n\nheld\n\n")
if how == "dotlock":
    os.unlink(path + ".lock")
os.close(fd)
"""


class LockHolder:
    def __init__(self, path, how):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), how],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout.readline() == b"locked\n"

    def release(self):
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        assert self.proc.wait(10) == 0

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def prime(inst, rcpt):
    qid = inst.send(simple_message("primer"), [rcpt])
    inst.wait_log(delivered_line(qid, rcpt, "delivered to mailbox"), program="local")


@pytest.mark.parametrize("how", ["fcntl", "flock", "dotlock"])
def test_locked_mailbox_makes_delivery_wait_never_interleave(system_mode, how):
    accounts, make = system_mode
    carol = accounts.login("carol")
    inst = make()
    rcpt = f"{carol.pw_name}@localhost"
    prime(inst, rcpt)
    path = inst.mbox(carol.pw_name)
    before = path.read_bytes()

    holder = LockHolder(path, how)
    try:
        qid = inst.send(simple_message("waiting"), [rcpt])
        inst.wait_log(rf"^{qid}: from=<", program="qmgr")
        time.sleep(2.5)   # deliver_lock_delay is 1s: several attempts go by
        assert path.read_bytes() == before
        assert not inst.find_log(rf"^{qid}: to=")
        holder.release()
    finally:
        holder.kill()
    inst.wait_log(delivered_line(qid, rcpt, "delivered to mailbox"), program="local")
    subjects = [m["Subject"] for m in mailbox.mbox(str(path), create=False)]
    assert subjects == ["primer", "holder", "waiting"]


def test_lock_held_too_long_defers_then_delivers(system_mode):
    accounts, make = system_mode
    dave = accounts.login("dave")
    inst = make(["deliver_lock_attempts = 2", "deliver_lock_delay = 1s"])
    rcpt = f"{dave.pw_name}@localhost"
    prime(inst, rcpt)
    path = inst.mbox(dave.pw_name)
    before = path.read_bytes()

    holder = LockHolder(path, "fcntl")
    try:
        qid = inst.send(simple_message("deferred"), [rcpt])
        inst.wait_log(rf"^{qid}: to=<{re.escape(rcpt)}>, .*dsn=4\.2\.0, status=deferred "
                      rf"\(cannot update mailbox {re.escape(str(path))} for user "
                      rf"{dave.pw_name}: unable to lock for exclusive access",
                      program="local")
        assert path.read_bytes() == before
        holder.release()
    finally:
        holder.kill()
    # qmgr moves the message to deferred/ only after local's reply, which
    # comes a moment after local's log line.
    inst.wait_deferred(qid)
    rc, out = inst.postern("flush")
    assert rc == 0, out
    inst.wait_log(delivered_line(qid, rcpt, "delivered to mailbox"), program="local")
    subjects = [m["Subject"] for m in mailbox.mbox(str(path), create=False)]
    assert subjects == ["primer", "holder", "deferred"]


def test_mailbox_size_limit_bounces_and_leaves_the_mailbox_as_it_was(system_mode):
    accounts, make = system_mode
    erin = accounts.login("erin")
    inst = make(["mailbox_size_limit = 3000"])
    rcpt = f"{erin.pw_name}@localhost"
    prime(inst, rcpt)
    path = inst.mbox(erin.pw_name)
    before = path.read_bytes()
    assert len(before) < 1500

    # Bigger than what is left: part of it is written, then cut back.
    qid = inst.send(simple_message("too big", body="x" * 70 + "\n" * 1 + ("y" * 70 + "\n") * 30),
                    [rcpt])
    inst.wait_log(rf"^{qid}: to=<{re.escape(rcpt)}>, .*dsn=5\.2\.2, status=bounced "
                  rf"\(cannot update mailbox .*mailbox_size_limit", program="local")
    assert path.read_bytes() == before
    assert not Path(f"{path}.lock").exists()

    # A small one still fits afterwards.
    q2 = inst.send(simple_message("fits"), [rcpt])
    inst.wait_log(delivered_line(q2, rcpt, "delivered to mailbox"), program="local")
    assert [m["Subject"] for m in mailbox.mbox(str(path), create=False)] == ["primer", "fits"]
