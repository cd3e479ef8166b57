"""Built-in content inspection in cleanup (header_checks, mime_header_checks,
nested_header_checks, body_checks with regexp: tables), end to end on a real
instance: REJECT at the end of DATA with the configured text and nothing
queued, HOLD into hold/ (shown with '!' by postqueue -p, released by
postsuper -H), DISCARD, WARN, IGNORE, REPLACE, PREPEND, BCC, the MIME parts
each table sees, and Postfix's log lines for each.
"""

import os
import re
import subprocess

from postern_instance import BUILD, HELO, SENDER, RawSMTP, clean_env, crlf, rfc2822_now
from tables_fixture import header_values, queue_dir_files, regexp_table

POSTQUEUE = BUILD / "bin" / "postqueue"
POSTSUPER = BUILD / "bin" / "postsuper"
FROM_CLIENT = (r" from unknown\[127\.0\.0\.1\]; from=<sender@example\.org> to=<alice@localhost> "
               rf"proto=ESMTP helo=<{re.escape(HELO)}>")


def message(subject, extra=(), body="hello\n", content_type=None):
    lines = [f"From: {SENDER}", "To: alice@localhost", f"Subject: {subject}",
             f"Date: {rfc2822_now()}", f"Message-ID: <{subject.replace(' ', '.')}@{HELO}>",
             *extra]
    if content_type:
        lines += ["MIME-Version: 1.0", f"Content-Type: {content_type}"]
    return "\n".join(lines) + "\n\n" + body


def checked_instance(make_instance, **tables):
    """An instance with the given check tables, each a list of regexp lines
    (header_checks=[...], body_checks=[...], ...)."""
    inst = make_instance(start=False)
    for param, lines in tables.items():
        inst.append_main_cf(f"{param} = {regexp_table(inst, param, lines)}")
    inst.start()
    return inst


def transaction(inst, msg, rcpts=("alice@localhost",)):
    """One SMTP transaction; returns (queue id from the RCPT-time log, the
    DATA reply code, its text)."""
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        for r in rcpts:
            assert c.cmd(f"RCPT TO:<{r}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(crlf(msg) + b".\r\n")
        code, texts = c.read_reply()
        c.cmd("QUIT")
    qid = inst.wait_log(r"^\w+: client=unknown\[127\.0\.0\.1\]$", program="smtpd")[-1]
    return qid.text.split(":", 1)[0], code, " ".join(texts)


def assert_nothing_queued(inst, qid):
    assert not inst.queue_files() and not queue_dir_files(inst, "hold")
    assert not inst.find_log(rf"^{qid}: from=", program="qmgr")
    assert not inst.delivered("alice")


def test_header_reject_refuses_at_end_of_data_and_queues_nothing(make_instance):
    inst = checked_instance(make_instance, header_checks=[
        "/^Subject:.*cheap pills/ REJECT No pharmacy spam here"])
    qid, code, text = transaction(inst, message("cheap pills today"))
    assert (code, text) == (550, "5.7.1 No pharmacy spam here")
    inst.wait_log(rf"^{qid}: reject: header Subject: cheap pills today{FROM_CLIENT}: "
                  r"5\.7\.1 No pharmacy spam here$", program="cleanup")
    assert_nothing_queued(inst, qid)
    # The next message is not affected.
    inst.send(message("a fine subject"))
    inst.wait_delivered("alice")


def test_hold_puts_the_message_in_hold_until_released(make_instance):
    inst = checked_instance(make_instance, header_checks=[
        "/^Subject:.*review me/ HOLD needs a human"])
    qid, code, text = transaction(inst, message("please review me"))
    assert code == 250 and text == f"2.0.0 Ok: queued as {qid}"
    inst.wait_log(rf"^{qid}: hold: header Subject: please review me{FROM_CLIENT}: "
                  r"needs a human$", program="cleanup")
    held = inst.queue / "hold" / qid
    assert held.is_file() and os.stat(held).st_mode & 0o777 == 0o700
    assert not inst.queue_files() and not inst.delivered("alice")
    assert not inst.find_log(rf"^{qid}: from=", program="qmgr")
    p = subprocess.run([str(POSTQUEUE), "-c", str(inst.etc), "-p"], capture_output=True,
                       env=clean_env(), timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    assert re.search(rf"^{qid}!\s", p.stdout.decode(), re.M), p.stdout

    p = subprocess.run([str(POSTSUPER), "-c", str(inst.etc), "-H", qid], capture_output=True,
                       env=clean_env(), timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    inst.postern("flush")
    [copy] = inst.wait_delivered("alice")
    assert header_values(copy.read_bytes(), "Subject") == ["please review me"]


def test_discard_accepts_logs_and_drops(make_instance):
    inst = checked_instance(make_instance, header_checks=["/^X-Spam-Flag: YES/ DISCARD spam"])
    qid, code, text = transaction(inst, message("whatever", extra=["X-Spam-Flag: YES"]))
    assert (code, text) == (250, f"2.0.0 Ok: queued as {qid}")
    inst.wait_log(rf"^{qid}: discard: header X-Spam-Flag: YES{FROM_CLIENT}: spam$",
                  program="cleanup")
    assert_nothing_queued(inst, qid)


def test_body_checks_match_a_body_line(make_instance):
    inst = checked_instance(make_instance, body_checks=[
        "/^click here to win/ REJECT 5.7.0 Lottery spam"])
    body = "Dear friend,\nclick here to win a prize\nbye\n"
    qid, code, text = transaction(inst, message("hello", body=body))
    assert (code, text) == (550, "5.7.0 Lottery spam")
    inst.wait_log(rf"^{qid}: reject: body click here to win a prize{FROM_CLIENT}: "
                  r"5\.7\.0 Lottery spam$", program="cleanup")
    assert_nothing_queued(inst, qid)


def test_warn_ignore_replace_prepend_and_bcc(make_instance):
    inst = checked_instance(
        make_instance,
        header_checks=[
            "/^X-Internal:/ IGNORE",
            "/^Subject: \\[ext\\] (.*)/ REPLACE Subject: $1",
            "/^X-Mailer: (.*)/ WARN old mailer $1",
            "/^Message-ID:/ PREPEND X-Checked: yes",
            "/^X-Copy-To-Audit:/ BCC audit@localhost",
        ],
        body_checks=[
            "/^password: .*/ REPLACE password: [removed]",
            "/^-- $/ PREPEND [signature follows]",
        ])
    msg = message("[ext] quarterly report",
                  extra=["X-Internal: secret routing", "X-Mailer: OldMail 1.0",
                         "X-Copy-To-Audit: 1"],
                  body="numbers inside\npassword: hunter2\n-- \nBob\n")
    qid, code, text = transaction(inst, msg)
    assert code == 250, text
    [data] = [p.read_bytes() for p in inst.wait_delivered("alice")]
    assert header_values(data, "Subject") == ["quarterly report"]
    assert header_values(data, "X-Internal") == []
    assert header_values(data, "X-Mailer") == ["OldMail 1.0"]
    head, body = data.split(b"\n\n", 1)
    assert b"\nX-Checked: yes\nMessage-ID: " in head
    assert body == b"numbers inside\npassword: [removed]\n[signature follows]\n-- \nBob\n"
    inst.wait_log(rf"^{qid}: warning: header X-Mailer: OldMail 1\.0{FROM_CLIENT}: "
                  r"old mailer OldMail 1\.0$", program="cleanup")
    inst.wait_log(rf"^{qid}: replace: header Subject: \[ext\] quarterly report{FROM_CLIENT}: "
                  r"Subject: quarterly report$", program="cleanup")
    # BCC: a copy for the audit address, which the sender never hears about.
    inst.wait_delivered("audit")
    inst.wait_log(rf"^{qid}: from=<sender@example\.org>, size=\d+, nrcpt=2 ", program="qmgr")


MULTIPART = """This is a multi-part message in MIME format.
--outer
Content-Type: text/plain; charset=us-ascii

See the attachments.
--outer
Content-Type: message/rfc822

X-Nested-Marker: inner
Subject: the forwarded one
Content-Type: text/plain

inner body line
--outer
Content-Type: application/octet-stream; name="{name}"
Content-Transfer-Encoding: base64

AAAA
--outer--
epilogue
"""


def test_mime_parts_meet_their_own_tables(make_instance):
    inst = checked_instance(
        make_instance,
        header_checks=["/^X-Nested-Marker:/ WARN top-level marker"],
        nested_header_checks=["/^X-Nested-Marker: (.*)/ WARN nested marker $1"],
        mime_header_checks=['/^Content-Type:.*name="?[^"]*\\.exe/ REJECT No executables'],
        body_checks=["/^inner body line$/ WARN body of the attached message",
                     "/^--outer--$/ INFO closing boundary"])
    outer = "multipart/mixed; boundary=outer"
    qid, code, text = transaction(inst, message("with attachments", content_type=outer,
                                                body=MULTIPART.format(name="report.pdf")))
    assert code == 250, text
    inst.wait_delivered("alice")
    inst.wait_log(rf"^{qid}: warning: header X-Nested-Marker: inner{FROM_CLIENT}: "
                  r"nested marker inner$", program="cleanup")
    inst.wait_log(rf"^{qid}: warning: body inner body line{FROM_CLIENT}: "
                  r"body of the attached message$", program="cleanup")
    inst.wait_log(rf"^{qid}: info: body --outer--{FROM_CLIENT}: closing boundary$",
                  program="cleanup")
    assert not inst.find_log(r"top-level marker")

    qid, code, text = transaction(inst, message("with an exe", content_type=outer,
                                                body=MULTIPART.format(name="setup.exe")))
    assert (code, text) == (550, "5.7.1 No executables")
    inst.wait_log(rf'^{qid}: reject: header Content-Type: application/octet-stream; '
                  rf'name="setup\.exe"{FROM_CLIENT}: 5\.7\.1 No executables$', program="cleanup")
    assert len(inst.delivered("alice")) == 1


def test_white_space_before_the_colon_still_makes_a_mime_header(make_instance):
    """"Content-Type : ..." (obsolete syntax) is a header for cleanup and
    for the checks alike: mime_header_checks sees it at the top and in a
    part, and the part's header block does not end at it."""
    inst = checked_instance(
        make_instance,
        header_checks=["/^Content-Type/ WARN wrong table"],
        mime_header_checks=["/^Content-Type *: *multipart/ WARN top-level type",
                            '/^Content-Type *:.*name="?[^"]*\\.exe/ REJECT No executables'],
        body_checks=["/^Content-Type/ WARN seen as body"])
    body = MULTIPART.format(name="setup.exe").replace(
        "Content-Type: application/octet-stream;", "Content-Type : application/octet-stream;")
    msg = message("spaced", body=body).replace(
        "\n\n", "\nMIME-Version: 1.0\nContent-Type : multipart/mixed; boundary=outer\n\n", 1)
    qid, code, text = transaction(inst, msg)
    assert (code, text) == (550, "5.7.1 No executables")
    inst.wait_log(rf"^{qid}: warning: header Content-Type : multipart/mixed; boundary=outer"
                  rf"{FROM_CLIENT}: top-level type$", program="cleanup")
    inst.wait_log(rf'^{qid}: reject: header Content-Type : application/octet-stream; '
                  rf'name="setup\.exe"{FROM_CLIENT}: 5\.7\.1 No executables$', program="cleanup")
    assert not inst.find_log(r"wrong table|seen as body")
    assert_nothing_queued(inst, qid)
