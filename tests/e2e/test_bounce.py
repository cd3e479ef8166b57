"""The bounce daemon over its real socket (private/bounce), driven by a
small Python client of bounce_protocol, as qmgr drives it: per-message
logs, RFC 3464 reports queued through cleanup and delivered by the real
instance, NOTIFY handling, double bounces, delay warnings, success reports.

The original messages are fixture queue files in hold/ (qmgr never touches
hold/), so only the reports move through the queue. Reports are parsed
with Python's email package.
"""

import email
import email.policy
import email.utils
import re
import smtplib
import time

import pytest

from postern_instance import HOSTNAME, Instance, crlf, free_port, simple_message, wait_until
from postfix_reference import started_postfix
from queue_fixture import (DSN_NOTIFY_DELAY, DSN_NOTIFY_FAILURE, DSN_NOTIFY_NEVER,
                           DSN_NOTIFY_SUCCESS, BounceClient, Rcpt, make_queue_file, read_log)
from smtp_peers import Receiver

REFUSED = ("host mx.example.com[192.0.2.1] said: 550 5.1.1 <bob@example.com>: "
           "Recipient address rejected: User unknown (in reply to RCPT TO command)")


@pytest.fixture(scope="module")
def inst():
    """One instance for the module: every test uses its own sender mailbox."""
    i = Instance(free_port(), extra_main=["bounce_size_limit = 4000"])
    try:
        i.start()
        yield i
    finally:
        print(i.log_tail(80))
        i.cleanup()


def original(inst, sender, rcpts, body="hello\n", attrs=(), subject="original"):
    msg = simple_message(subject, body=body, extra_headers=["X-Original: yes"])
    qid, rcpts = make_queue_file(inst.queue, "hold", sender, rcpts, msg, attrs=attrs,
                                 arrival=time.time() - 3600)
    return qid, rcpts, msg


def report_for(inst, user, qid, timeout=30):
    """The report about qid delivered to user's Maildir, parsed."""
    def find():
        for path in inst.delivered(user):
            m = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
            if qid in path.read_text(errors="replace"):
                return m
        return None
    return wait_until(find, timeout, what=f"a report about {qid} for {user}")


def parts(report):
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    p = report.get_payload()
    assert [x.get_content_type() for x in p[:2]] == ["text/plain", "message/delivery-status"]
    per_message, *per_rcpt = p[1].get_payload()
    return p[0], per_message, per_rcpt, p[2] if len(p) > 2 else None


def test_non_delivery_report(inst):
    qid, r, msg = original(inst, "s1@localhost",
                           [Rcpt("bob@example.com"), Rcpt("carol@localhost", done=True)])
    with BounceClient(inst.queue) as c:
        assert c.append(qid, "bounce", r[0], "5.1.1", REFUSED,
                        relay="mx.example.com[192.0.2.1]:25") == {"status": "0"}
        log = read_log(inst.queue, "bounce", qid)
        assert [(e["rcpt"], e["dsn"], e["reason"], e["offset"]) for e in log] == [
            ("bob@example.com", "5.1.1", REFUSED, str(r[0].offset))]
        assert c.flush(qid, "hold") == {"status": "0"}
    assert not (inst.queue / "bounce" / qid).exists()
    line = inst.wait_log(rf"^{qid}: sender non-delivery notification: (\w+)$", "bounce")[0]
    new_id = line.text.rsplit(" ", 1)[1]
    inst.wait_log(rf"^{new_id}: from=<>, size=\d+, nrcpt=1 \(queue active\)$", "qmgr")

    rep = report_for(inst, "s1", qid)
    assert rep["Return-Path"] == "<>"
    assert rep["From"] == f"MAILER-DAEMON@{HOSTNAME} (Mail Delivery System)"
    assert rep["To"] == "s1@localhost"
    assert rep["Subject"] == "Undelivered Mail Returned to Sender"
    assert rep["Auto-Submitted"] == "auto-replied"
    text, msg_fields, rcpts, orig = parts(rep)
    assert "<bob@example.com>: " + REFUSED in text.get_payload()
    assert msg_fields["Reporting-MTA"] == f"dns; {HOSTNAME}"
    assert msg_fields["X-Postern-Queue-ID"] == qid
    assert msg_fields["X-Postern-Sender"] == "rfc822; s1@localhost"
    assert email.utils.parsedate_to_datetime(msg_fields["Arrival-Date"]) is not None
    assert msg_fields["Original-Envelope-Id"] is None
    # Exactly the failed recipient; the delivered one is not listed.
    assert len(rcpts) == 1
    b = rcpts[0]
    assert b["Final-Recipient"] == "rfc822; bob@example.com"
    assert (b["Action"], b["Status"]) == ("failed", "5.1.1")
    assert b["Remote-MTA"] == "dns; mx.example.com"
    assert b["Diagnostic-Code"] == ("smtp; 550 5.1.1 <bob@example.com>: Recipient address "
                                    "rejected: User unknown")
    # The whole original comes back.
    assert orig.get_content_type() == "message/rfc822"
    inner = orig.get_payload()[0]
    assert inner["Subject"] == "original" and inner["X-Original"] == "yes"
    assert inner.get_payload() == "hello\n"


def test_ret_hdrs_envid_orcpt(inst):
    """RET=HDRS returns the headers only; ENVID and ORCPT come back; a local
    failure has a non-SMTP diagnostic and no Remote-MTA."""
    rc = Rcpt("rob@localhost", orig="robert@localhost", dsn_orcpt="rfc822;Robert@Example.ORG")
    qid, r, _ = original(inst, "s2@localhost", [rc], body="secret body\n",
                         attrs=[("dsn_ret", "HDRS"), ("dsn_envid", "envid-42")])
    with BounceClient(inst.queue) as c:
        assert c.append(qid, "bounce", r[0], "5.1.1", 'unknown user: "rob"',
                        relay="local")["status"] == "0"
        assert c.flush(qid, "hold") == {"status": "0"}
    rep = report_for(inst, "s2", qid)
    text, msg_fields, rcpts, orig = parts(rep)
    assert msg_fields["Original-Envelope-Id"] == "envid-42"
    assert rcpts[0]["Original-Recipient"] == "rfc822;Robert@Example.ORG"
    assert rcpts[0]["Final-Recipient"] == "rfc822; rob@localhost"
    assert rcpts[0]["Remote-MTA"] is None
    assert rcpts[0]["Diagnostic-Code"] == 'X-Postern; unknown user: "rob"'
    assert "(expanded from <robert@localhost>)" in text.get_payload()
    assert orig.get_content_type() == "text/rfc822-headers"
    returned = orig.get_payload()
    assert "Subject: original" in returned and "secret body" not in returned


def test_size_limit_returns_headers_only(inst):
    qid, r, _ = original(inst, "s3@localhost", ["big@example.com"], body=("z" * 70 + "\n") * 100)
    with BounceClient(inst.queue) as c:
        c.append(qid, "bounce", r[0], "5.2.2", "mailbox full", relay="none")
        assert c.flush(qid, "hold") == {"status": "0"}
    rep = report_for(inst, "s3", qid)
    _, _, _, orig = parts(rep)
    assert orig.get_content_type() == "text/rfc822-headers"
    assert "X-Original: yes" in orig.get_payload() and "zzzz" not in orig.get_payload()


def test_notify_never_and_notify_filtering(inst):
    """NOTIFY=NEVER suppresses the report; NOTIFY=SUCCESS alone does not ask
    for failures; only the recipients that asked are reported."""
    qid, r, _ = original(inst, "s4@localhost", [
        Rcpt("never@example.com", notify=DSN_NOTIFY_NEVER),
        Rcpt("succ@example.com", notify=DSN_NOTIFY_SUCCESS),
        Rcpt("fail@example.com", notify=DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY),
        Rcpt("plain@example.com")])
    with BounceClient(inst.queue) as c:
        for x in r:
            assert c.append(qid, "bounce", x, "5.0.0", "no", relay="none")["status"] == "0"
        assert c.flush(qid, "hold") == {"status": "0"}
    rep = report_for(inst, "s4", qid)
    _, _, rcpts, _ = parts(rep)
    assert [x["Final-Recipient"] for x in rcpts] == ["rfc822; fail@example.com",
                                                     "rfc822; plain@example.com"]

    qid2, r2, _ = original(inst, "s5@localhost",
                           [Rcpt("never@example.com", notify=DSN_NOTIFY_NEVER)])
    with BounceClient(inst.queue) as c:
        c.append(qid2, "bounce", r2[0], "5.0.0", "no", relay="none")
        assert c.flush(qid2, "hold") == {"status": "0"}
    assert not (inst.queue / "bounce" / qid2).exists()
    time.sleep(1)
    assert inst.delivered("s5") == []
    assert not inst.find_log(rf"^{qid2}: sender non-delivery")


def test_double_bounce_goes_to_postmaster(inst):
    """A failed message from <> is reported to the postmaster, from
    double_bounce_sender; a failed postmaster copy is discarded."""
    qid, r, _ = original(inst, "", ["nobody@example.com"])
    with BounceClient(inst.queue) as c:
        c.append(qid, "bounce", r[0], "5.1.1", "no such user", relay="none")
        assert c.flush(qid, "hold") == {"status": "0"}
    inst.wait_log(rf"^{qid}: postmaster non-delivery notification: \w+$", "bounce")
    rep = report_for(inst, "postmaster", qid)
    assert rep["Return-Path"] == f"<double-bounce@{HOSTNAME}>"
    assert rep["To"] == f"postmaster@{HOSTNAME}"
    assert rep["Subject"] == "Postmaster Copy: Undelivered Mail"
    _, msg_fields, rcpts, _ = parts(rep)
    assert msg_fields["X-Postern-Sender"] == "rfc822; "
    assert rcpts[0]["Final-Recipient"] == "rfc822; nobody@example.com"

    qid2, r2, _ = original(inst, f"double-bounce@{HOSTNAME}", ["postmaster@example.com"])
    with BounceClient(inst.queue) as c:
        c.append(qid2, "bounce", r2[0], "5.1.1", "no such user", relay="none")
        assert c.flush(qid2, "hold") == {"status": "0"}
    inst.wait_log(rf"^{qid2}: discarding undeliverable postmaster notification$", "bounce")
    assert not (inst.queue / "bounce" / qid2).exists()


def test_delay_warning(inst):
    """warn reports the deferred recipients still pending (not those that
    asked for failures only, not those finished since) and keeps the log."""
    qid, r, _ = original(inst, "s6@localhost", [
        Rcpt("slow@example.com"),
        Rcpt("failonly@example.com", notify=DSN_NOTIFY_FAILURE),
        Rcpt("donenow@example.com", done=True),
        Rcpt("delay@example.com", notify=DSN_NOTIFY_DELAY)])
    with BounceClient(inst.queue) as c:
        for x in r:
            assert c.append(qid, "defer", x, "4.4.1",
                            "connect to mx.example.com[192.0.2.1]:25: Connection refused",
                            relay="none")["status"] == "0"
        assert c.warn(qid, "hold") == {"status": "0"}
    inst.wait_log(rf"^{qid}: sender delay notification: \w+$", "bounce")
    rep = report_for(inst, "s6", qid)
    assert rep["Subject"] == "Delayed Mail (still being retried)"
    text, _, rcpts, orig = parts(rep)
    assert [(x["Final-Recipient"], x["Action"], x["Status"]) for x in rcpts] == [
        ("rfc822; slow@example.com", "delayed", "4.4.1"),
        ("rfc822; delay@example.com", "delayed", "4.4.1")]
    assert all(email.utils.parsedate_to_datetime(x["Will-Retry-Until"]) for x in rcpts)
    assert orig.get_content_type() == "text/rfc822-headers"
    assert len(read_log(inst.queue, "defer", qid)) == 4   # the log stays


def test_success_report(inst):
    qid, r, _ = original(inst, "s7@localhost", [
        Rcpt("glad@localhost", notify=DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE)])
    with BounceClient(inst.queue) as c:
        assert c.append(qid, "success", r[0], "2.0.0", "delivered to maildir",
                        relay="local")["status"] == "0"
        assert (inst.queue / "success" / qid).exists()
        assert c.flush(qid, "hold") == {"status": "0"}
    inst.wait_log(rf"^{qid}: sender delivery status notification: \w+$", "bounce")
    rep = report_for(inst, "s7", qid)
    assert rep["Subject"] == "Successful Mail Delivery Report"
    _, _, rcpts, orig = parts(rep)
    assert [(x["Action"], x["Status"]) for x in rcpts] == [("delivered", "2.0.0")]
    assert orig.get_content_type() == "text/rfc822-headers"
    assert not (inst.queue / "success" / qid).exists()


def test_requests_refused_and_log_kept(inst):
    """Bad requests get status=1 with a reason on the same connection; a
    flush that cannot read the original keeps the bounce log for later."""
    qid, r, _ = original(inst, "s8@localhost", ["x@example.com"])
    with BounceClient(inst.queue) as c:
        bad = c.append("../../etc", "bounce", "x@example.com", "5.0.0", "no")
        assert bad["status"] == "1" and bad["reason"]
        assert c.append(qid, "trace", "x@example.com", "5.0.0", "no")["status"] == "1"
        assert c.request(request="explode")["status"] == "1"
        assert c.append(qid, "bounce", r[0], "5.0.0", "no", relay="none")["status"] == "0"
        gone = c.flush(qid, "deferred")        # it is in hold/, not deferred/
        assert gone["status"] == "1" and "deferred" in gone["reason"]
        assert len(read_log(inst.queue, "bounce", qid)) == 1
        assert c.flush(qid, "../hold")["status"] == "1"
        assert c.flush(qid, "hold") == {"status": "0"}
    report_for(inst, "s8", qid)


# --- end to end: qmgr asks bounce, reports go back through the queue ---------------

# qmgr's error: route gives a permanent failure that does not depend on the
# local delivery agent; a Maildir path that is a plain file gives a
# temporary one (local cannot create the Maildir).
TRANSPORT = "/^nosuch/ error:5.1.1 unknown user\n"
FAST_RETRY = ["minimal_backoff_time = 1s", "maximal_backoff_time = 2s", "queue_run_delay = 1s"]


@pytest.fixture
def routed(make_instance):
    def make(extra=()):
        i = make_instance(extra_main=["transport_maps = regexp:$config_directory/transport",
                                      *extra], start=False)
        (i.etc / "transport").write_text(TRANSPORT)
        i.start()
        return i
    return make


def send(inst, sender, rcpts, subject, mail_options=()):
    """rcpts: [(address, [RCPT options])]; returns the queue id."""
    with inst.smtp() as s:
        assert s.ehlo()[0] == 250 and s.has_extn("dsn")
        assert s.mail(sender, list(mail_options)) == (250, b"2.1.0 Ok")
        for addr, opts in rcpts:
            assert s.rcpt(addr, list(opts)) == (250, b"2.1.5 Ok"), addr
        code, resp = s.data(simple_message(subject).encode().replace(b"\n", b"\r\n"))
        assert code == 250, resp
        return resp.decode().rsplit(" ", 1)[1]


def test_permanent_failure_bounces_at_once_notify_never_suppresses(routed):
    inst = routed()
    qid = send(inst, "e1@localhost", [("nosuch@localhost", []),
                                      ("nosuch.never@localhost", ["NOTIFY=NEVER"]),
                                      ("alice@localhost", [])], "permanent")
    inst.wait_log(rf"^{qid}: sender non-delivery notification: \w+$", "bounce")
    rep = report_for(inst, "e1", qid)
    _, msg_fields, rcpts, orig = parts(rep)
    # Exactly the failed recipient that did not say NEVER; not the delivered one.
    assert [(x["Final-Recipient"], x["Action"], x["Status"]) for x in rcpts] == [
        ("rfc822; nosuch@localhost", "failed", "5.1.1")]
    assert rcpts[0]["Diagnostic-Code"] == "X-Postern; unknown user"
    assert msg_fields["X-Postern-Queue-ID"] == qid
    assert orig.get_content_type() == "message/rfc822"
    assert orig.get_payload()[0]["Subject"] == "permanent"
    inst.wait_delivered("alice")
    inst.wait_queue_empty()
    assert not (inst.queue / "bounce" / qid).exists()

    # Every failed recipient said NEVER: no report at all.
    qid2 = send(inst, "e2@localhost", [("nosuch@localhost", ["NOTIFY=NEVER"])], "never")
    inst.wait_log(rf"^{qid2}: removed$", "qmgr")
    time.sleep(0.5)
    assert inst.delivered("e2") == []
    assert not inst.find_log(rf"^{qid2}: sender non-delivery notification")


def test_bounce_to_undeliverable_sender_lands_with_postmaster(routed):
    inst = routed()
    qid = send(inst, "nosuch.sender@localhost", [("nosuch@localhost", [])], "double")
    first = inst.wait_log(rf"^{qid}: sender non-delivery notification: (\w+)$", "bounce")[0]
    bounce_id = first.text.rsplit(" ", 1)[1]
    inst.wait_log(rf"^{bounce_id}: postmaster non-delivery notification: \w+$", "bounce")
    rep = report_for(inst, "postmaster", bounce_id)
    assert rep["Return-Path"] == f"<double-bounce@{HOSTNAME}>"
    _, msg_fields, rcpts, orig = parts(rep)
    assert msg_fields["X-Postern-Queue-ID"] == bounce_id
    assert [(x["Final-Recipient"], x["Status"]) for x in rcpts] == [
        ("rfc822; nosuch.sender@localhost", "5.1.1")]
    # What came back is the undeliverable report itself.
    returned = orig.get_payload()[0]
    assert returned["Subject"] == "Undelivered Mail Returned to Sender"
    assert returned["To"] == "nosuch.sender@localhost"
    inst.wait_queue_empty()
    assert sorted(p.name for p in inst.mail.iterdir()) == ["postmaster"]   # nothing else


def test_expired_message_bounces_failed_recipients_only(routed):
    inst = routed(FAST_RETRY + ["maximal_queue_lifetime = 3s"])
    inst.mail.mkdir(exist_ok=True)
    (inst.mail / "carol").write_text("not a directory\n")
    qid = send(inst, "e3@localhost", [("carol@localhost", []), ("alice@localhost", [])], "expiry")
    inst.wait_delivered("alice")
    inst.wait_log(rf"^{qid}: to=<carol@localhost>, .*status=deferred")
    rep = report_for(inst, "e3", qid, timeout=30)
    _, _, rcpts, _ = parts(rep)
    assert len(rcpts) == 1
    assert rcpts[0]["Final-Recipient"] == "rfc822; carol@localhost"
    assert rcpts[0]["Action"] == "failed"
    assert rcpts[0]["Status"].startswith("4.")
    inst.wait_queue_empty()


def test_dsn_parameters_end_to_end(routed):
    """RET=HDRS, ENVID and ORCPT given over SMTP come back in the report;
    NOTIFY=SUCCESS yields a delivered report."""
    inst = routed()
    qid = send(inst, "e4@localhost",
               [("nosuch@localhost", ["NOTIFY=FAILURE", "ORCPT=rfc822;Nosuch+2Bx@Example.COM"]),
                ("alice@localhost", ["NOTIFY=SUCCESS"])],
               "dsn params", mail_options=["RET=HDRS", "ENVID=env+2Bid-7"])
    inst.wait_log(rf"^{qid}: sender non-delivery notification: \w+$", "bounce")
    inst.wait_log(rf"^{qid}: sender delivery status notification: \w+$", "bounce")
    inst.wait_delivered("e4", 2)
    reports = {}
    for path in inst.delivered("e4"):
        m = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
        reports[m["Subject"]] = m
    _, msg_fields, rcpts, orig = parts(reports["Undelivered Mail Returned to Sender"])
    assert msg_fields["Original-Envelope-Id"] == "env+id-7"
    assert rcpts[0]["Original-Recipient"] == "rfc822;Nosuch+x@Example.COM"
    assert orig.get_content_type() == "text/rfc822-headers"
    _, _, rcpts, _ = parts(reports["Successful Mail Delivery Report"])
    assert [(x["Final-Recipient"], x["Action"], x["Status"]) for x in rcpts] == [
        ("rfc822; alice@localhost", "delivered", "2.0.0")]
    inst.wait_queue_empty()


# --- reports of a pass that leaves recipients deferred, against Postfix ------------

def test_reports_go_out_while_other_recipients_wait_as_with_postfix(make_instance):
    """One pass bounces a recipient (550 from the next hop), delivers one
    that asked NOTIFY=SUCCESS, and defers a third (closed relayhost): the
    sender gets both reports at once, not when the third is done, and the
    message waits in the queue for the third. Postfix does the same, on
    the same next hops."""
    rcv = Receiver("127.0.0.1", rcpt_replies={
        "nosuch@elsewhere.example": "550 5.1.1 no such user"}).start()
    hop = f"smtp:[127.0.0.1]:{rcv.port}"
    cf = [f"transport_maps = inline:{{ {{nosuch@elsewhere.example={hop}}} "
          f"{{okay@elsewhere.example={hop}}} }}", "relayhost = [127.0.0.1]:9"]
    rcpts = ["nosuch@elsewhere.example", "okay@elsewhere.example", "later@elsewhere.example"]
    msg = simple_message("three ways")
    pf = started_postfix(cf[:1])
    try:
        postern = make_instance(extra_main=cf)
        got, qids = {}, {}
        for name, port, log_text in (
                ("postern", postern.port, lambda: postern.log.read_text(errors="replace")),
                ("postfix", pf.port, lambda: pf.log.read_text(errors="replace"))):
            qid = qids[name] = submit(port, "s@sender.example", rcpts, msg)
            rx = re.compile(rf"/bounce\[\d+\]: {qid}: sender (non-delivery|delivery status) "
                            r"notification: \w+$", re.M)
            kinds = wait_until(lambda: (lambda k: k if len(k) == 2 else None)(
                sorted(rx.findall(log_text()))), 20, what=f"{name}'s two reports")
            later = re.search(rf": {qid}: to=<later@elsewhere\.example>, .*status=(\w+)",
                              log_text())
            got[name] = (kinds, later and later[1])
        assert got["postern"] == got["postfix"] == (
            ["delivery status", "non-delivery"], "deferred"), got
        postern.wait_deferred(qids["postern"])
        assert len(rcv.messages) == 2   # okay@, once from each MTA
    finally:
        rcv.stop()
        print(pf.log_tail(30))
        pf.stop()
        pf.cleanup()


def submit(port, sender, rcpts, msg):
    """One message over SMTP, every recipient NOTIFY=SUCCESS,FAILURE; its
    queue id."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as s:
        assert s.ehlo("client.example")[0] == 250
        assert s.mail(sender)[0] == 250
        for r in rcpts:
            assert s.rcpt(r, ["NOTIFY=SUCCESS,FAILURE"])[0] == 250, r
        code, resp = s.data(crlf(msg))
        assert code == 250, resp
        return resp.decode().rsplit(" ", 1)[1]
