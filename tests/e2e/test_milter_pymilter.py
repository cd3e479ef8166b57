"""A milter on Sendmail's own libmilter (python3-milter,
pymilter_script.py) against Postern: each action a milter has, with its
documented effect in the reply or the delivered message, and the macros
libmilter got at each stage, over TLS and AUTH so that none is missing:
continue, accept, reject, tempfail, discard, a reply code with text (on
several lines), quarantine, skip, progress; adding, inserting, changing
and deleting headers, adding a recipient (with ESMTP parameters),
deleting one, changing the sender, replacing the body.
"""

import re
import time

import pytest

from milter_peers import PyMilter
from postern_instance import HELO, HOSTNAME, SENDER, Instance, crlf, free_port, split_message
from smtpd_fixture import TLSRaw, make_cert, sasl_lines, tls_lines
from tables_fixture import queue_dir_files
from test_milter import Client, message, queued_id

CONNECT_MACROS = ("j {daemon_name} {daemon_addr} v _ {client_addr} {client_name} {client_port} "
                  "{client_ptr} {client_resolve}")


@pytest.fixture(scope="module")
def pymilter():
    p = PyMilter()
    yield p
    print(p.log_text()[-3000:])
    p.close()


@pytest.fixture(scope="module")
def inst(pymilter):
    i = Instance(free_port())
    cert, key = make_cert(i.root)
    i.write_main_cf(tls_lines(cert, key) + sasl_lines({"alice": "secret"}) + [
        f"smtpd_milters = {pymilter.spec}",
        f"milter_connect_macros = {CONNECT_MACROS}",
        "milter_content_timeout = 2s",
        "milter_command_timeout = 2s",
    ])
    i.start()
    yield i
    print(i.log_tail(100))
    i.cleanup()


def records(pymilter, start, stage):
    return [r for r in pymilter.records()[start:] if r["stage"] == stage]


def test_macros_libmilter_gets_at_each_stage(inst, pymilter):
    start = len(pymilter.records())
    c = TLSRaw.logged_in(inst.port, "alice", "secret")
    assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
    assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(crlf(message("macros")) + b".\r\n")
    qid = queued_id(c.read_reply())
    c.cmd("QUIT")
    c.close()
    pymilter.wait_records(lambda r: r["stage"] == "close", what="the session's end")
    connect = records(pymilter, start, "connect")[0]
    m = connect["macros"]
    assert connect["args"]["hostaddr"][0] == "127.0.0.1"
    assert m["j"] == HOSTNAME and m["{daemon_name}"] == HOSTNAME and m["{daemon_addr}"] == "127.0.0.1"
    assert m["v"].startswith("Postern ") and m["_"] == "unknown [127.0.0.1]"
    assert m["{client_addr}"] == "127.0.0.1" and m["{client_name}"] == "unknown"
    # the tests' DNS is a closed port: the name lookup failed for now
    assert m["{client_ptr}"] == "unknown" and m["{client_resolve}"] == "TEMP"
    assert int(m["{client_port}"]) == connect["args"]["hostaddr"][1]
    # HELO again after STARTTLS: the TLS macros
    helo = records(pymilter, start, "helo")[-1]["macros"]
    assert helo["{tls_version"] if False else helo["{tls_version}"] in ("TLSv1.2", "TLSv1.3")
    assert helo["{cipher}"] and int(helo["{cipher_bits}"]) >= 128
    assert helo["{cert_subject}"] is None and helo["{cert_issuer}"] is None   # no client certificate
    mail = records(pymilter, start, "mail")[0]["macros"]
    assert mail["{auth_type}"] == "PLAIN" and mail["{auth_authen}"] == "alice"
    assert mail["{auth_author}"] is None
    assert mail["{mail_addr}"] == SENDER
    assert mail["{mail_host}"] == "example.org" and mail["{mail_mailer}"] == "smtp"
    rcpt = records(pymilter, start, "rcpt")[0]["macros"]
    assert (rcpt["{rcpt_addr}"], rcpt["{rcpt_host}"], rcpt["{rcpt_mailer}"]) == (
        "alice@localhost", "localhost", "local")
    for stage in ("data", "eoh", "eom"):
        assert records(pymilter, start, stage)[0]["macros"]["i"] == qid, stage


@pytest.mark.parametrize("sender,rcpt,command,want", [
    ("mail-reject@example.org", "a@localhost", "MAIL", (550, ["5.7.1 Command rejected"])),
    ("mail-tempfail@example.org", "a@localhost", "MAIL",
     (451, ["4.7.1 Service unavailable - try again later"])),
    ("mail-reply@example.org", "a@localhost", "MAIL", (551, ["5.7.1 Sender refused by pymilter"])),
    (SENDER, "rcpt-reject@localhost", "RCPT", (550, ["5.7.1 Command rejected"])),
    (SENDER, "rcpt-tempfail@localhost", "RCPT",
     (451, ["4.7.1 Service unavailable - try again later"])),
    (SENDER, "rcpt-ml@localhost", "RCPT",
     (550, ["5.7.1 first line", "5.7.1 second line", "5.7.1 third line"])),
    (SENDER, "data-tempfail@localhost", "DATA",
     (451, ["4.7.1 Service unavailable - try again later"])),
])
def test_refusals_before_the_message(inst, sender, rcpt, command, want):
    c = Client(inst)
    assert c.send_message(message(), rcpts=(rcpt,), sender=sender) == want
    c.quit()
    inst.wait_log(rf"milter-reject: {command} from unknown\[127\.0\.0\.1\]: {want[0]}",
                  program="smtpd")


def test_discard_at_rcpt_and_accept_at_mail(inst, pymilter):
    c = Client(inst)
    qid = queued_id(c.send_message(message(), rcpts=("rcpt-discard@localhost",)))
    c.quit()
    inst.wait_log(rf"^NOQUEUE: milter-discard: RCPT from ")
    time.sleep(0.5)
    assert not inst.find_log(rf"^{qid}: from=")
    start = len(pymilter.records())
    c = Client(inst)
    queued_id(c.send_message(message("accepted"), rcpts=("accepted@localhost",),
                             sender="mail-accept@example.org"))
    c.quit()
    inst.wait_delivered("accepted")
    # accepted at MAIL: libmilter heard nothing more of that message
    assert not records(pymilter, start, "eom") and not records(pymilter, start, "rcpt")


def test_unknown_command(inst):
    c = Client(inst)
    assert c.cmd("XPYMILTER now") == (550, ["5.5.1 pymilter does not know that"])
    assert c.cmd("OTHERCMD")[0] == 500
    c.quit()


def orders(*actions, subject="ordered"):
    return message(subject, extra=["X-Delete-Me: please", f"X-Milter-Do: {' '.join(actions)}"])


def test_every_edit_reaches_the_delivered_message(inst):
    c = Client(inst)
    qid = queued_id(c.send_message(
        orders("add-header", "insert-header", "change-header", "delete-header", "add-rcpt",
               "add-rcpt-par", "del-rcpt", "change-from", "replace-body"),
        rcpts=("edited@localhost", "dave@localhost")))
    c.quit()
    data = inst.wait_delivered("edited")[-1].read_bytes()
    headers, body = split_message(data)
    names = [h.split(b":", 1)[0] for h in headers]
    assert headers[0] == b"Return-Path: <changed-sender@example.net>"
    # Below the delivery's trace headers (Return-Path, X-Original-To,
    # Delivered-To), inserted at 0: above our Received:.
    top = names.index(b"X-Pymilter-Top")
    assert names[:top] == [b"Return-Path", b"X-Original-To", b"Delivered-To"], names
    assert names[top:top + 2] == [b"X-Pymilter-Top", b"Received"]
    assert names[-1] == b"X-Pymilter-Added"
    assert b"Subject: changed by pymilter" in headers
    assert b"X-Delete-Me" not in names
    assert body == b"The body pymilter wrote.\nSecond chunk of it.\n"
    # the recipients: bob and carol added, dave deleted
    for user in ("bob", "carol"):
        assert qid.encode() in inst.wait_delivered(user)[-1].read_bytes()
    time.sleep(0.5)
    assert not inst.delivered("dave")
    inst.wait_log(rf"^{qid}: to=<carol@localhost>, relay=local")
    assert inst.find_log(rf"^{qid}: from=<changed-sender@example\.net>", program="qmgr")


@pytest.mark.parametrize("action,want", [
    ("reject", (550, ["5.7.1 Command rejected"])),
    ("tempfail", (451, ["4.7.1 Service unavailable - try again later"])),
    ("reply", (554, ["5.7.1 Rejected by pymilter", "5.7.1 for the test"])),
])
def test_refusals_at_end_of_message(inst, action, want):
    c = Client(inst)
    assert c.send_message(orders(action), rcpts=(f"eom-{action}@localhost",)) == want
    c.quit()
    inst.wait_log(r"milter-reject: END-OF-MESSAGE from ", program="cleanup")
    assert not inst.delivered(f"eom-{action}")


def test_discard_accept_quarantine_at_end_of_message(inst):
    c = Client(inst)
    discarded = queued_id(c.send_message(orders("discard"), rcpts=("eom-discard@localhost",)))
    accepted = queued_id(c.send_message(orders("accept", "add-header"),
                                        rcpts=("eom-accept@localhost",)))
    held = queued_id(c.send_message(orders("quarantine"), rcpts=("eom-hold@localhost",)))
    c.quit()
    inst.wait_log(rf"^{discarded}: milter-discard: END-OF-MESSAGE")
    # ACCEPT still applies the edits made before it
    assert b"X-Pymilter-Added: appended" in inst.wait_delivered("eom-accept")[-1].read_bytes()
    inst.wait_log(rf"^{held}: milter-hold: END-OF-MESSAGE from \S+: pymilter says hold it; ")
    assert (inst.queue / "hold" / held).exists()
    time.sleep(0.5)
    assert not inst.delivered("eom-discard") and not inst.delivered("eom-hold")


def test_skip_and_progress(inst, pymilter):
    start = len(pymilter.records())
    big = "".join(f"line {i} of a body of several chunks\n" for i in range(10000))
    c = Client(inst)
    queued_id(c.send_message(message("skip", extra=["X-Milter-Do: skip"], body=big),
                             rcpts=("skipped@localhost",)))
    c.quit()
    inst.wait_delivered("skipped")
    eom = records(pymilter, start, "eom")[0]
    assert eom["args"]["chunks"] == 1   # the body stopped after SMFIR_SKIP
    # progress: four seconds at the end of the message against a content
    # timeout of two, each second SMFIR_PROGRESS
    c = Client(inst)
    began = time.monotonic()
    queued_id(c.send_message(orders("progress", "add-header"), rcpts=("patient@localhost",)))
    took = time.monotonic() - began
    c.quit()
    assert took >= 3.5
    assert b"X-Pymilter-Added" in inst.wait_delivered("patient")[-1].read_bytes()
    assert not queue_dir_files(inst, "corrupt")
    assert not inst.find_log(r"Connection timed out")
