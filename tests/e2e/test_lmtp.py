"""The LMTP delivery agent (remote run as "lmtp" from master.cf's lmtp
service) against the test session's private Dovecot (dovecot_fixture.py):

- virtual_transport = lmtp:unix:private/dovecot-lmtp: one message to three
  recipients, one unknown to Dovecot: two land in their Maildirs (seen in
  the files and by doveadm), the unknown one bounces alone with Dovecot's
  5.1.1 text in the DSN; Postfix's log lines (relay=host[path], the
  per-recipient reply as the status text);
- transport_maps with lmtp:inet:127.0.0.1:PORT and local_transport with
  lmtp:[127.0.0.1]:PORT;
- Dovecot's LMTP down: deferred with a connect error, delivered once after
  it is back and the queue is flushed; nothing lost or duplicated.
"""

import email
import os
import re
import subprocess

from postern_instance import HOSTNAME, simple_message, wait_until

SENDER = "postmaster@localhost"   # bounces come back to a local Maildir


def lmtp_master_cf(inst):
    return (f"127.0.0.1:{inst.port} inet n - n - - smtpd\n"
            "cleanup unix - - n - 0 cleanup\n"
            "qmgr fifo n - n 300 1 qmgr\n"
            "local unix - n n - - local\n"
            "smtp unix - - n - - remote\n"
            "lmtp unix - - n - - lmtp\n"
            "bounce unix - - n - 0 bounce\n")


def lmtp_instance(make_instance, dovecot, extra=()):
    inst = make_instance(start=False)
    inst.write_master_cf(lmtp_master_cf(inst))
    inst.write_main_cf(["virtual_mailbox_domains = example.com",
                        "virtual_mailbox_maps = inline:{ alice@example.com=x, "
                        "bob@example.com=x, carol@example.com=x, nobody@example.com=x }",
                        "virtual_transport = lmtp:unix:private/dovecot-lmtp", *extra])
    (inst.queue / "private").mkdir(mode=0o700, exist_ok=True)
    os.symlink(dovecot.lmtp_socket, inst.queue / "private" / "dovecot-lmtp")
    inst.start()
    return inst


def status_of(inst, qid, rcpt):
    lines = inst.find_log(rf"^{qid}: to=<{re.escape(rcpt)}>, ", program="lmtp")
    return lines[-1].text if lines else None


def test_one_message_three_recipients_one_unknown(make_instance, dovecot):
    inst = lmtp_instance(make_instance, dovecot)
    before = {u: len(dovecot.messages(u)) for u in ("alice@example.com", "bob@example.com")}
    qid = inst.send(simple_message(subject="lmtp three", test_id="lmtp3"), sender=SENDER,
                    rcpts=["alice@example.com", "nobody@example.com", "bob@example.com"])
    for user in ("alice@example.com", "bob@example.com"):
        msgs = dovecot.wait_messages(user, before[user] + 1)
        data = msgs[-1].read_bytes()
        assert b"X-Test-Id: lmtp3" in data
        head = data.split(b"\n\n")[0].decode()
        assert f"Return-Path: <{SENDER}>" in head, head
    relay = re.escape(f"{HOSTNAME}[private/dovecot-lmtp]")
    for user in ("alice@example.com", "bob@example.com"):
        line = wait_until(lambda: status_of(inst, qid, user), 30, what=f"{user}'s status")
        assert re.match(rf"^{qid}: to=<{re.escape(user)}>, relay={relay}, delay=[\d.]+, "
                        rf"delays=[\d./]+, dsn=2\.0\.0, status=sent \(250 2\.0\.0 "
                        rf"<{re.escape(user)}> \S+ Saved\)$", line), line
    line = wait_until(lambda: status_of(inst, qid, "nobody@example.com"), 30,
                      what="nobody's status")
    assert re.match(rf"^{qid}: to=<nobody@example\.com>, relay={relay}, .*dsn=5\.1\.1, "
                    rf"status=bounced \(host {relay} said: 550 5\.1\.1 <nobody@example\.com> "
                    rf"User doesn't exist: nobody@example\.com \(in reply to RCPT TO command\)\)$",
                    line), line
    # The DSN names only the unknown recipient, with Dovecot's text.
    report = inst.wait_delivered("postmaster")[0].read_bytes()
    msg = email.message_from_bytes(report)
    status = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"][0]
    text = status.as_string()
    assert "Final-Recipient: rfc822; nobody@example.com" in text, text
    assert "User doesn't exist: nobody@example.com" in text, text
    assert "alice@example.com" not in text and "bob@example.com" not in text, text
    inst.wait_log(rf"^{qid}: removed$", program="qmgr")
    # doveadm sees the message in alice's INBOX.
    rc, out = dovecot.doveadm("search", "-u", "alice@example.com", "mailbox", "INBOX",
                              "header", "X-Test-Id", "lmtp3")
    assert rc == 0 and out.strip(), out
    # The lmtp service ran remote under Postfix's name.
    assert inst.find_log(r"service lmtp: Postfix's lmtp runs as Postern's remote", "master")


def test_transport_maps_inet_and_local_transport(make_instance, dovecot):
    port = dovecot.lmtp_port
    inst = lmtp_instance(make_instance, dovecot, extra=[
        f"transport_maps = inline:{{ carol@example.com=lmtp:inet:127.0.0.1:{port} }}",
        "mydestination = localhost, $myhostname, local.example",
        f"local_transport = lmtp:[127.0.0.1]:{port}",
        "local_recipient_maps ="])
    n = len(dovecot.messages("carol@example.com"))
    qid = inst.send(simple_message(subject="via inet"), rcpts=["carol@example.com"])
    dovecot.wait_messages("carol@example.com", n + 1)
    line = wait_until(lambda: status_of(inst, qid, "carol@example.com"), 30, what="status")
    assert f"relay=127.0.0.1[127.0.0.1]:{port}, " in line and "status=sent" in line, line
    # A local domain through local_transport: local.example is not Dovecot's
    # domain, so its LMTP refuses carol there with 5.1.1.
    qid = inst.send(simple_message(subject="local via lmtp"), sender=SENDER,
                    rcpts=["carol@local.example"])
    line = wait_until(lambda: status_of(inst, qid, "carol@local.example"), 30, what="status")
    assert f"relay=127.0.0.1[127.0.0.1]:{port}, " in line, line
    assert "dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1" in line, line


def test_dovecot_down_defers_then_delivers_once(make_instance, dovecot):
    inst = lmtp_instance(make_instance, dovecot)
    n = len(dovecot.messages("alice@example.com"))
    dovecot.stop()
    try:
        qid = inst.send(simple_message(subject="while down", test_id="lmtp-down"),
                        rcpts=["alice@example.com"])
        line = wait_until(lambda: status_of(inst, qid, "alice@example.com"), 30,
                          what="the deferral")
        assert re.search(r"relay=none, .*dsn=4\.4\.1, status=deferred \(connect to "
                         rf"{re.escape(HOSTNAME)}\[private/dovecot-lmtp\]: ", line), line
        inst.wait_deferred(qid)
    finally:
        dovecot.start()
    assert inst.postern("flush")[0] == 0
    msgs = dovecot.wait_messages("alice@example.com", n + 1)
    inst.wait_log(rf"^{qid}: removed$", program="qmgr")
    assert sum(b"X-Test-Id: lmtp-down" in p.read_bytes()
               for p in dovecot.messages("alice@example.com")) == 1, msgs


def test_mailbox_transport(make_instance, dovecot):
    """local hands mailbox delivery to lmtp (mailbox_transport), which
    logs it; an address Dovecot does not know bounces with its 5.1.1."""
    inst = lmtp_instance(make_instance, dovecot, extra=[
        "mydestination = localhost, $myhostname, example.com",
        "virtual_mailbox_domains =",
        "mailbox_transport = lmtp:unix:private/dovecot-lmtp"])
    n = len(dovecot.messages("bob@example.com"))
    qid = inst.send(simple_message(subject="mailbox transport", test_id="mbxt"), sender=SENDER,
                    rcpts=["bob@example.com", "nobody@example.com"])
    msgs = dovecot.wait_messages("bob@example.com", n + 1)
    assert b"X-Test-Id: mbxt" in msgs[-1].read_bytes()
    line = wait_until(lambda: status_of(inst, qid, "bob@example.com"), 30, what="bob's status")
    assert re.search(rf"relay={re.escape(HOSTNAME)}\[private/dovecot-lmtp\], .*dsn=2\.0\.0, "
                     r"status=sent \(250 2\.0\.0 <bob@example\.com> ", line), line
    line = wait_until(lambda: status_of(inst, qid, "nobody@example.com"), 30, what="status")
    assert "dsn=5.1.1, status=bounced" in line, line
    inst.wait_log(rf"^{qid}: removed$", program="qmgr")
    # local left the logging to lmtp, and wrote no Maildir of its own.
    assert not inst.find_log(rf"^{qid}: to=<bob@example\.com>, relay=local", program="local")
    assert not inst.delivered("bob")
