"""Hosted domains and relocated users, end to end on a real instance:
virtual alias fan-out to a local user and a hosted mailbox (Maildir owned
by the mapped uid), mbox hosted mailboxes, unknown hosted addresses refused
at RCPT time, relocated_maps bounces (5.1.6 with the new address, also when
a virtual alias leads there), and a uid under virtual_minimum_uid keeping
the mail queued.
"""

import email
import email.policy
import os
import re
import smtplib
import time

import pytest

from postern_instance import SENDER, crlf, simple_message, wait_until
from tables_fixture import cdb_table, header_values, maildir_new, wait_maildir

ROOT = os.geteuid() == 0
# As root the agent writes with the mapped ids; as a user it can only be us.
VUID = 5000 if ROOT else os.getuid()
VGID = 5000 if ROOT else os.getgid()


def hosted_instance(make_instance, aliases=(), mailboxes=(), extra=(), start=True):
    """An instance hosting hosted.example (virtual mailboxes under ROOT/vmail,
    owned by VUID:VGID) with example.com as a virtual alias domain."""
    inst = make_instance(start=False)
    os.chmod(inst.root, 0o755)   # the mailbox owner must get through to vmail/
    base = inst.root / "vmail"
    base.mkdir()
    os.chown(base, VUID, VGID)
    valias = cdb_table(inst, "virtual", list(aliases) or ["nobody@example.com nobody@localhost"])
    vmbox = cdb_table(inst, "vmailbox", ["hosted.example ok", *mailboxes])
    inst.append_main_cf(
        "virtual_alias_domains = example.com",
        f"virtual_alias_maps = {valias}",
        f"virtual_mailbox_maps = {vmbox}",
        "virtual_mailbox_domains = $virtual_mailbox_maps",
        f"virtual_mailbox_base = {base}",
        f"virtual_uid_maps = static:{VUID}",
        f"virtual_gid_maps = static:{VGID}",
        *([] if ROOT else ["virtual_minimum_uid = 0"]),
        *extra,
    )
    if start:
        inst.start()
    return inst, base


def test_alias_fans_out_to_a_local_user_and_a_hosted_maildir(make_instance):
    inst, base = hosted_instance(
        make_instance,
        aliases=["sales@example.com alice@localhost, user@hosted.example"],
        mailboxes=["user@hosted.example hosted.example/user/"])
    qid = inst.send(simple_message("fan out"), ["sales@example.com"])

    [local_copy] = inst.wait_delivered("alice")
    [hosted_copy] = wait_maildir(base / "hosted.example" / "user")
    inst.wait_log(rf"^{qid}: to=<alice@localhost>, orig_to=<sales@example\.com>, relay=local, "
                  r".*status=sent \(delivered to maildir\)$", program="local")
    inst.wait_log(rf"^{qid}: to=<user@hosted\.example>, orig_to=<sales@example\.com>, "
                  r"relay=virtual, .*dsn=2\.0\.0, status=sent \(delivered to maildir\)$",
                  program="virtual")
    inst.wait_log(rf"^{qid}: removed$", program="qmgr")

    data = hosted_copy.read_bytes()
    assert header_values(data, "Delivered-To") == ["user@hosted.example"]
    assert header_values(data, "X-Original-To") == ["sales@example.com"]
    assert header_values(data, "Return-Path") == [f"<{SENDER}>"]
    assert header_values(data, "Subject") == ["fan out"]
    assert b"Subject: fan out" in local_copy.read_bytes()
    # The Maildir and the message belong to the mapped owner.
    for p in (base / "hosted.example", base / "hosted.example" / "user",
              base / "hosted.example" / "user" / "new", hosted_copy):
        st = os.stat(p)
        assert (st.st_uid, st.st_gid) == (VUID, VGID), p
    assert os.stat(hosted_copy).st_mode & 0o777 == 0o600


def test_unknown_hosted_and_alias_addresses_are_refused_at_rcpt(make_instance):
    inst, base = hosted_instance(
        make_instance,
        aliases=["info@example.com alice@localhost"],
        mailboxes=["user@hosted.example hosted.example/user/"])
    with inst.smtp() as s:
        s.ehlo()
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        assert s.rcpt("nobody@hosted.example") == (
            550, b"5.1.1 <nobody@hosted.example>: Recipient address rejected: "
                 b"User unknown in virtual mailbox table")
        assert s.rcpt("ghost@example.com") == (
            550, b"5.1.1 <ghost@example.com>: Recipient address rejected: "
                 b"User unknown in virtual alias table")
        assert s.rcpt("user@hosted.example") == (250, b"2.1.5 Ok")
        assert s.rcpt("info@example.com") == (250, b"2.1.5 Ok")
    inst.wait_log(r"^NOQUEUE: reject: RCPT from .*: 550 5\.1\.1 <nobody@hosted\.example>: "
                  r"Recipient address rejected: User unknown in virtual mailbox table;",
                  program="smtpd")
    assert not maildir_new(base / "hosted.example" / "nobody")


def test_hosted_domains_are_destinations_for_clients_outside_mynetworks(make_instance):
    inst, base = hosted_instance(
        make_instance,
        aliases=["info@example.com alice@localhost"],
        mailboxes=["user@hosted.example hosted.example/user/"])
    with inst.smtp(source=("127.0.0.2", 0)) as s:
        s.ehlo()
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        assert s.rcpt("user@hosted.example") == (250, b"2.1.5 Ok")
        assert s.rcpt("info@example.com") == (250, b"2.1.5 Ok")
        assert s.rcpt("nobody@hosted.example")[0] == 550
        assert s.rcpt("bob@elsewhere.example") == (
            554, b"5.7.1 <bob@elsewhere.example>: Relay access denied")
        code, resp = s.data(crlf(simple_message("from outside")))
        assert code == 250, resp
    wait_maildir(base / "hosted.example" / "user")
    inst.wait_delivered("alice")


def test_hosted_mbox_and_unknown_user_bounce_from_the_agent(make_instance):
    # An "@domain" catch-all in the alias map lets an address past smtpd that
    # virtual_mailbox_maps does not know: the agent bounces it (5.1.1).
    inst, base = hosted_instance(
        make_instance,
        aliases=["@hosted.example @hosted.example"],
        mailboxes=["box@hosted.example hosted.example/box"])
    qid = inst.send(simple_message("to an mbox"),
                    ["box@hosted.example", "stranger@hosted.example"])
    inst.wait_log(rf"^{qid}: to=<box@hosted\.example>, relay=virtual, .*"
                  r"status=sent \(delivered to mailbox\)$", program="virtual")
    inst.wait_log(rf"^{qid}: to=<stranger@hosted\.example>, relay=virtual, .*dsn=5\.1\.1, "
                  r"status=bounced \(unknown user: \"stranger@hosted\.example\"\)$",
                  program="virtual")
    mbox = base / "hosted.example" / "box"
    data = mbox.read_bytes()
    assert data.startswith(f"From {SENDER} ".encode())
    assert data.endswith(b"\n\n")
    assert b"Delivered-To: box@hosted.example\n" in data
    st = os.stat(mbox)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (VUID, VGID, 0o600)


def report_for(inst, user, qid, timeout=30):
    def find():
        for path in inst.delivered(user):
            raw = path.read_bytes()
            if qid.encode() in raw:
                return email.message_from_bytes(raw, policy=email.policy.compat32)
        return None
    return wait_until(find, timeout, what=f"a report about {qid} for {user}")


def test_relocated_user_bounces_with_5_1_6_and_the_new_address(make_instance):
    inst = make_instance(start=False)
    reloc = cdb_table(inst, "relocated", ["olduser@localhost olduser@new.example"])
    inst.append_main_cf(f"relocated_maps = {reloc}")
    inst.start()
    qid = inst.send(simple_message("are you there"), ["olduser@localhost", "alice@localhost"],
                    sender="carol@localhost")
    inst.wait_log(rf"^{qid}: to=<olduser@localhost>, relay=none, .*dsn=5\.1\.6, "
                  r"status=bounced \(User has moved to olduser@new\.example\)$", program="qmgr")
    inst.wait_delivered("alice")
    report = report_for(inst, "carol", qid)
    text = report.as_string()
    assert "Status: 5.1.6" in text
    assert "User has moved to olduser@new.example" in text
    assert "Final-Recipient: rfc822; olduser@localhost" in text


def test_alias_to_a_relocated_hosted_mailbox_bounces_with_the_original_recipient(
        make_instance):
    # Postfix's order: cleanup expands the alias, then qmgr finds the
    # result in relocated_maps, before any hosted delivery.
    inst, base = hosted_instance(
        make_instance,
        aliases=["boss@example.com chief@hosted.example"],
        mailboxes=["chief@hosted.example hosted.example/chief/"],
        start=False)
    reloc = cdb_table(inst, "relocated", ["chief@hosted.example chief@elsewhere.example"])
    inst.append_main_cf(f"relocated_maps = {reloc}")
    inst.start()
    qid = inst.send(simple_message("for the boss"), ["boss@example.com"],
                    sender="carol@localhost")
    inst.wait_log(rf"^{qid}: to=<chief@hosted\.example>, orig_to=<boss@example\.com>, "
                  r"relay=none, .*dsn=5\.1\.6, status=bounced "
                  r"\(User has moved to chief@elsewhere\.example\)$", program="qmgr")
    text = report_for(inst, "carol", qid).as_string()
    assert "Original-Recipient: rfc822;boss@example.com" in text.replace("; ", ";")
    assert not maildir_new(base / "hosted.example" / "chief")


def test_uid_below_virtual_minimum_uid_keeps_the_mail_queued(make_instance):
    inst, base = hosted_instance(
        make_instance,
        mailboxes=["user@hosted.example hosted.example/user/"],
        extra=[f"virtual_minimum_uid = {VUID + 1}"])
    qid = inst.send(simple_message("not yet"), ["user@hosted.example"])
    inst.wait_log(rf"^{qid}: to=<user@hosted\.example>, relay=virtual, .*dsn=4\.3\.0, "
                  r"status=deferred \(mail system configuration error\)$", program="virtual")
    inst.wait_log(rf"recipient user@hosted\.example: uid {VUID} is below virtual_minimum_uid",
                  program="virtual")
    assert any(p.name == qid for p in inst.queue_files())
    assert not maildir_new(base / "hosted.example" / "user")
