"""Aliases, .forward files and address extensions in system mode, and what
happens to mail that cannot be delivered: unknown users (rejected at RCPT,
or bounced by local when smtpd let them through), alias loops and
Delivered-To: loops (bounced, never looped).
"""

import mailbox
import os
import re
from pathlib import Path

from postern_instance import HOSTNAME, SENDER, simple_message
from system_mode import needs_root, system_mode  # noqa: F401 (fixture)

pytestmark = needs_root

CAPTURE = """#!/bin/sh
# capture.sh DIR NAME: keep what a pipe destination receives.
umask 077
cat > "$1/$2.msg"
env > "$1/$2.env"
id -u > "$1/$2.uid"
"""


def line_re(qid, rcpt, dsn, status, text, orig=None):
    orig_part = rf"orig_to=<{re.escape(orig)}>, " if orig else ""
    return (rf"^{qid}: to=<{re.escape(rcpt)}>, {orig_part}relay=local, .*"
            rf"dsn={re.escape(dsn)}, status={status} \({text}")


def subjects(path):
    return [m["Subject"] for m in mailbox.mbox(str(path), create=False)]


def capture_setup(inst, owner):
    """A capture script and an output directory that only owner can write."""
    bindir = inst.root / "bin"
    bindir.mkdir()
    script = bindir / "capture.sh"
    script.write_text(CAPTURE)
    os.chmod(script, 0o755)
    out = inst.root / "out"
    out.mkdir()
    os.chown(out, owner.pw_uid, owner.pw_gid)
    os.chmod(out, 0o700)
    return script, out


def test_alias_to_three_users_a_command_and_a_file(system_mode):
    accounts, make = system_mode
    users = [accounts.login(f"m{i}") for i in range(3)]
    listadm = accounts.login("ladm")
    inst = make()
    script, out = capture_setup(inst, listadm)
    names = [u.pw_name for u in users]
    inst.write_aliases(
        f"# the team\n"
        f"team: {names[0]}, {names[1]},\n"
        f"    {names[2]}, \"|{script} {out} team\",\n"
        f"    {out}/team.mbox\n"
        f"owner-team: {names[0]}\n",
        owner=listadm)
    rcpt = "team@localhost"
    qid = inst.send(simple_message("to the team"), [rcpt])

    for n in names:
        inst.wait_log(line_re(qid, f"{n}@{HOSTNAME}", "2.0.0", "sent", r"delivered to mailbox\)",
                              orig=rcpt), program="local")
    inst.wait_log(line_re(qid, rcpt, "2.0.0", "sent",
                          rf"delivered to command: {re.escape(str(script))} "), program="local")
    inst.wait_log(line_re(qid, rcpt, "2.0.0", "sent",
                          rf"delivered to file: {re.escape(str(out))}/team\.mbox\)"),
                  program="local")

    for u in users:
        path = inst.mbox(u.pw_name)
        st = os.stat(path)
        assert (st.st_uid, st.st_mode & 0o777) == (u.pw_uid, 0o600)
        [msg] = list(mailbox.mbox(str(path), create=False))
        assert msg["Subject"] == "to the team"
        assert msg["Delivered-To"] == rcpt and msg["X-Original-To"] == rcpt
        # owner-team exists, so delivery errors go to it.
        assert msg["Return-Path"] == f"<owner-team@{HOSTNAME}>"

    # The command and the file ran with the rights of the alias table's owner.
    assert (out / "team.uid").read_text().strip() == str(listadm.pw_uid)
    env = (out / "team.env").read_text().splitlines()
    assert f"RECIPIENT={rcpt}" in env and f"SENDER=owner-team@{HOSTNAME}" in env
    assert (out / "team.msg").read_bytes().endswith(b"\n\nhello\n")
    st = os.stat(out / "team.mbox")
    assert (st.st_uid, st.st_mode & 0o777) == (listadm.pw_uid, 0o600)
    assert subjects(out / "team.mbox") == ["to the team"]
    # One log line per destination, none for the alias itself.
    assert len(inst.find_log(rf"^{qid}: to=", program="local")) == 5
    inst.wait_log(rf"^{qid}: removed$", program="qmgr")


def test_forward_file_sends_to_another_user(system_mode):
    accounts, make = system_mode
    bob, carol, dave = (accounts.login(p) for p in ("bob", "carol", "dave"))
    inst = make()
    # bob forwards to carol; dave forwards to carol and keeps a copy (\dave).
    for user, text in ((bob, f"# to carol\n{carol.pw_name}\n"),
                       (dave, f"{carol.pw_name}, \\{dave.pw_name}\n")):
        fwd = Path(user.pw_dir) / ".forward"
        fwd.write_text(text)
        os.chown(fwd, user.pw_uid, user.pw_gid)

    q1 = inst.send(simple_message("for bob"), [f"{bob.pw_name}@localhost"])
    inst.wait_log(line_re(q1, f"{carol.pw_name}@{HOSTNAME}", "2.0.0", "sent",
                          r"delivered to mailbox\)", orig=f"{bob.pw_name}@localhost"),
                  program="local")
    q2 = inst.send(simple_message("for dave"), [f"{dave.pw_name}@localhost"])
    inst.wait_log(line_re(q2, f"{dave.pw_name}@{HOSTNAME}", "2.0.0", "sent",
                          r"delivered to mailbox\)", orig=f"{dave.pw_name}@localhost"),
                  program="local")
    inst.wait_log(line_re(q2, f"{carol.pw_name}@{HOSTNAME}", "2.0.0", "sent",
                          r"delivered to mailbox\)", orig=f"{dave.pw_name}@localhost"),
                  program="local")
    assert subjects(inst.mbox(carol.pw_name)) == ["for bob", "for dave"]
    assert subjects(inst.mbox(dave.pw_name)) == ["for dave"]
    assert not inst.mbox(bob.pw_name).exists()


def test_address_extension_lands_in_the_user(system_mode):
    accounts, make = system_mode
    erin = accounts.login("erin")
    inst = make(["recipient_delimiter = +"])
    rcpt = f"{erin.pw_name.capitalize()}+Tag@localhost"
    qid = inst.send(simple_message("tagged"), [rcpt])
    inst.wait_log(line_re(qid, rcpt, "2.0.0", "sent", r"delivered to mailbox\)"),
                  program="local")
    [msg] = list(mailbox.mbox(str(inst.mbox(erin.pw_name)), create=False))
    assert msg["Subject"] == "tagged" and msg["Delivered-To"] == rcpt


def test_alias_loop_is_bounced(system_mode):
    accounts, make = system_mode
    frank = accounts.login("frank")
    inst = make()
    inst.write_aliases(f"loopa: loopb\nloopb: {frank.pw_name}, loopa\n")
    qid = inst.send(simple_message("loop"), ["loopa@localhost"])
    inst.wait_log(line_re(qid, f"loopa@{HOSTNAME}", "5.4.6", "bounced",
                          rf"mail forwarding loop for loopa@{re.escape(HOSTNAME)}\)",
                          orig="loopa@localhost"), program="local")
    # frank, also in the expansion, got one copy; nothing was delivered twice.
    inst.wait_log(line_re(qid, f"{frank.pw_name}@{HOSTNAME}", "2.0.0", "sent",
                          r"delivered to mailbox\)", orig="loopa@localhost"), program="local")
    assert subjects(inst.mbox(frank.pw_name)) == ["loop"]
    assert len(inst.find_log(rf"^{qid}: to=", program="local")) == 2
    inst.wait_log(rf"^{qid}: removed$", program="qmgr")

    # A chain of aliases too long to be anything but a loop ends the same way.
    inst.write_aliases("".join(f"chain{i}: chain{i + 1}\n" for i in range(40))
                       + f"chain40: {frank.pw_name}\n")
    q2 = inst.send(simple_message("long chain"), ["chain0@localhost"])
    inst.wait_log(rf"^{q2}: to=<chain\d+@{re.escape(HOSTNAME)}>, orig_to=<chain0@localhost>, "
                  rf"relay=local, .*dsn=5\.4\.6, status=bounced \(mail forwarding loop",
                  program="local")
    assert subjects(inst.mbox(frank.pw_name)) == ["loop"]


def test_delivered_to_loop_is_bounced(system_mode):
    accounts, make = system_mode
    gina = accounts.login("gina")
    inst = make()
    rcpt = f"{gina.pw_name}@localhost"
    looped = simple_message("been here", extra_headers=[f"Delivered-To: {rcpt.upper()}"])
    qid = inst.send(looped, [rcpt])
    inst.wait_log(line_re(qid, rcpt, "5.4.6", "bounced",
                          rf"mail forwarding loop for {re.escape(rcpt)}\)"), program="local")
    assert not inst.mbox(gina.pw_name).exists()
    # A Delivered-To: for somebody else is no loop.
    other = simple_message("passing through", extra_headers=["Delivered-To: someone@else"])
    q2 = inst.send(other, [rcpt])
    inst.wait_log(line_re(q2, rcpt, "2.0.0", "sent", r"delivered to mailbox\)"),
                  program="local")
    assert subjects(inst.mbox(gina.pw_name)) == ["passing through"]


def test_unknown_user_rejected_at_rcpt(system_mode):
    accounts, make = system_mode
    hank = accounts.login("hank")
    inst = make()
    inst.write_aliases("listname: root\n")
    with inst.smtp() as s:
        s.ehlo()
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt("nosuchuser@localhost") == (
            550, b"5.1.1 <nosuchuser@localhost>: Recipient address rejected: "
                 b"User unknown in local recipient table")
        assert s.rcpt(f"nosuchuser@{HOSTNAME}")[0] == 550
        # Users (passwd) and aliases (alias_maps) are known.
        assert s.rcpt(f"{hank.pw_name}@localhost") == (250, b"2.1.5 Ok")
        assert s.rcpt("ListName@localhost") == (250, b"2.1.5 Ok")


def test_unknown_user_past_smtpd_is_bounced_by_local(system_mode):
    accounts, make = system_mode
    inst = make(["local_recipient_maps ="])
    qid = inst.send(simple_message("nobody home"), ["nosuchuser@localhost"])
    inst.wait_log(line_re(qid, "nosuchuser@localhost", "5.1.1", "bounced",
                          r'unknown user: "nosuchuser"\)'), program="local")


def test_forward_to_a_remote_address_is_resubmitted(system_mode):
    from smtp_peers import Receiver
    accounts, make = system_mode
    ivan = accounts.login("ivan")
    receiver = Receiver("127.0.0.1").start()
    try:
        inst = make([f"relayhost = [127.0.0.1]:{receiver.port}"])
        write = Path(ivan.pw_dir) / ".forward"
        write.write_text(f"friend@remote.example, \\{ivan.pw_name}\n")
        os.chown(write, ivan.pw_uid, ivan.pw_gid)
        rcpt = f"{ivan.pw_name}@localhost"
        qid = inst.send(simple_message("pass it on"), [rcpt])
        [line] = inst.wait_log(line_re(qid, "friend@remote.example", "2.0.0", "sent",
                                       r"forwarded as (\w+)\)", orig=rcpt), program="local")
        new_qid = re.search(r"forwarded as (\w+)\)", line.text).group(1)
        inst.wait_log(line_re(qid, f"{ivan.pw_name}@{HOSTNAME}", "2.0.0", "sent",
                              r"delivered to mailbox\)", orig=rcpt), program="local")
        # The copy is a new message with its own queue id, from the same
        # sender, marked Delivered-To: so that it cannot loop back unseen.
        [msg] = receiver.wait_messages(1)
        assert msg["mail_from"] == SENDER and msg["rcpt_tos"] == ["friend@remote.example"]
        assert msg["data"].startswith(f"Delivered-To: {rcpt}\r\n".encode()), msg["data"][:200]
        assert b"Subject: pass it on" in msg["data"]
        inst.wait_log(rf"^{new_qid}: to=<friend@remote\.example>, .*status=sent", program="smtp")
    finally:
        receiver.stop()
