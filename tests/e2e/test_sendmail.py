"""Local submission through the real sendmail, postdrop and pickup: what
cron, mailx and scripts do, end to end into the Maildirs of a real
instance (issue 4). The ordinary-user and master-down cases are in
test_sendmail_user.py.
"""

import getpass
import os
import re
import shutil
import subprocess

from postern_instance import HOSTNAME, RawSMTP, split_message, header_name
from queue_fixture import parse_records
from sendmail_helpers import (EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE, SENDMAIL, body_of,
                              complete_incoming, header_values, maildrop_files, run_sendmail,
                              sendmail_env, start_without_qmgr)

ME = getpass.getuser()
UID = os.getuid()


def pickup_qid(inst, sender=ME):
    """Queue id of the (first) pickup line for sender, as Postfix logs it."""
    line = inst.wait_log(rf"^\w+: uid={UID} from=<{re.escape(sender)}>$", program="pickup")[0]
    return line.text.split(":", 1)[0]


def test_t_delivers_to_to_cc_and_bcc_and_no_copy_has_bcc(instance):
    msg = "To: a@localhost\nCc: b@localhost\nBcc: c@localhost\nSubject: t\n\nbody\n"
    r = run_sendmail(instance, ["-t"], msg)
    assert (r.returncode, r.stderr) == (0, b"")
    copies = {u: instance.wait_delivered(u, 1) for u in ("a", "b", "c")}
    qid = pickup_qid(instance)
    for user, files in copies.items():
        assert len(files) == 1, (user, files)
        data = files[0].read_bytes()
        assert b"bcc:" not in data.lower(), data
        headers, body = split_message(data)
        assert body == b"body\n"
        assert b"To: a@localhost" in headers and b"Cc: b@localhost" in headers, headers
        names = [header_name(h) for h in headers]
        for added in ("from", "date", "message-id"):
            assert names.count(added) == 1, headers
        assert f"id {qid};".encode() in data, data   # pickup's Received: line
    instance.wait_log(rf"^{qid}: from=<{ME}@{re.escape(HOSTNAME)}>, size=\d+, nrcpt=3 "
                      r"\(queue active\)$", program="qmgr")
    instance.wait_log(rf"^{qid}: removed$", program="qmgr")


def test_bcc_with_white_space_before_the_colon_is_still_removed(instance):
    msg = "To: a@localhost\nBcc : c@localhost\nSubject: spaced\n\nbody\n"
    r = run_sendmail(instance, ["-t"], msg)
    assert (r.returncode, r.stderr) == (0, b"")
    for user in ("a", "c"):
        [copy] = instance.wait_delivered(user, 1)
        data = copy.read_bytes()
        assert b"bcc" not in data.lower(), data
        assert header_values(data, "Subject") == ["spaced"], data


def test_bare_addresses_get_myorigin_and_from_gets_the_full_name(instance):
    msg = ("To: bob, Carol Q <carol>\nReply-To: (me) alice\nSubject: qualify\n\nhi\n")
    r = run_sendmail(instance, ["-F", "Alice Example", "-f", "alice", "--", "bob", "carol"], msg)
    assert (r.returncode, r.stderr) == (0, b"")
    data = instance.wait_delivered("bob", 1)[0].read_bytes()
    instance.wait_delivered("carol", 1)
    assert data.startswith(f"Return-Path: <alice@{HOSTNAME}>\n".encode()), data
    assert header_values(data, "To") == [f"bob@{HOSTNAME}, Carol Q <carol@{HOSTNAME}>"]
    assert header_values(data, "Reply-To") == [f"(me) alice@{HOSTNAME}"]
    assert header_values(data, "From") == [f"Alice Example <alice@{HOSTNAME}>"]
    qid = pickup_qid(instance, "alice")
    instance.wait_log(rf"^{qid}: to=<bob@{re.escape(HOSTNAME)}>, orig_to=<bob>, relay=local, .*"
                      r"status=sent", program="local")


def test_cron_style_body_with_lone_dots_arrives_intact(instance, tmp_path):
    body = "line one\n.\n..\n.hidden\nlast line\n"
    path = tmp_path / "cron-output"
    path.write_text(f"Subject: cron job\n\n{body}")
    with open(path, "rb") as f:
        r = subprocess.run([str(SENDMAIL), "-i", "bob"], stdin=f, capture_output=True,
                           env=sendmail_env(instance), timeout=20)
    assert (r.returncode, r.stderr) == (0, b"")
    assert body_of(instance.wait_delivered("bob", 1)[0]) == body.encode()


def test_without_i_a_lone_dot_ends_the_message(instance):
    r = run_sendmail(instance, ["bob"], "Subject: dot\n\nbefore\n.\nafter\n")
    assert r.returncode == 0, r.stderr
    assert body_of(instance.wait_delivered("bob", 1)[0]) == b"before\n"


def test_crlf_and_a_leading_from_line_are_cleaned_up(instance):
    msg = b"From someone Sat Jan  1 00:00:00 2000\r\nSubject: crlf\r\n\r\none\r\ntwo\r\n"
    r = run_sendmail(instance, ["-oi", "bob@localhost"], msg)
    assert r.returncode == 0, r.stderr
    data = instance.wait_delivered("bob", 1)[0].read_bytes()
    assert b"\r" not in data and b"From someone" not in data, data
    assert header_values(data, "Subject") == ["crlf"] and body_of_bytes(data) == b"one\ntwo\n"


def body_of_bytes(data):
    return data.partition(b"\n\n")[2]


def test_bsd_mailx_sends_through_our_sendmail(instance, tmp_path):
    mailx = shutil.which("bsd-mailx")
    assert mailx, "bsd-mailx is not installed (scripts/deps.sh installs it)"
    rc = tmp_path / "mailrc"
    rc.write_text(f"set sendmail={SENDMAIL}\n")
    env = sendmail_env(instance, MAILRC=str(rc), HOME=str(tmp_path))
    r = subprocess.run([mailx, "-s", "Hello from mailx", "bob@localhost"], input=b"mailx body\n",
                       capture_output=True, env=env, timeout=20)
    assert r.returncode == 0, r.stderr
    data = instance.wait_delivered("bob", 1)[0].read_bytes()
    assert header_values(data, "Subject") == ["Hello from mailx"]
    assert header_values(data, "To") == ["bob@localhost"]
    assert header_values(data, "From") and header_values(data, "Message-ID"), data
    assert body_of_bytes(data) == b"mailx body\n"


def smtp_replies(text):
    """[(code, [lines])] of a stream of SMTP replies."""
    out, pending = [], []
    for line in text.split("\r\n"):
        if not line:
            continue
        assert re.match(r"^\d{3}[ -]", line), line
        pending.append(line[4:])
        if line[3] == " ":
            out.append((int(line[:3]), pending))
            pending = []
    assert not pending, pending
    return out


def test_bs_speaks_smtp_on_stdin_and_stdout(instance):
    session = ("EHLO client.example\r\nMAIL FROM:<sender@example.org>\r\n"
               "RCPT TO:<bob@localhost>\r\nDATA\r\nSubject: bs\r\n\r\n..leading dot\r\nplain\r\n"
               ".\r\nFOO\r\nRCPT TO:<bob@localhost>\r\nRSET\r\nQUIT\r\n")
    r = run_sendmail(instance, ["-bs"], session)
    assert r.returncode == 0, r.stderr
    replies = smtp_replies(r.stdout.decode())
    assert [c for c, _ in replies] == [220, 250, 250, 250, 354, 250, 500, 503, 250, 221], replies
    assert replies[0][1][0].startswith(HOSTNAME)
    assert "PIPELINING" in replies[1][1] and "8BITMIME" in replies[1][1]
    assert replies[5][1] == ["2.0.0 Ok: queued"]
    data = instance.wait_delivered("bob", 1)[0].read_bytes()
    assert data.startswith(b"Return-Path: <sender@example.org>\n"), data
    assert body_of_bytes(data) == b".leading dot\nplain\n"


def test_bs_answers_a_whole_pipelined_session_read_from_a_file(instance, tmp_path):
    """smtpd -S behind sendmail -bs takes every command at once, even from a
    regular file: replies in order, both messages queued through postdrop
    (the DSN parameters a user may give pass, ORCPT is dropped quietly),
    nothing read after QUIT, exit status 0."""
    session = ("EHLO client.example\r\n"
               "MAIL FROM:<a@example.org>\r\n"
               "RCPT TO:<bob@localhost> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@localhost\r\n"
               "DATA\r\nSubject: one\r\n\r\nfirst\r\n.\r\n"
               "MAIL FROM:<b@example.org> RET=HDRS ENVID=env-2\r\n"
               "RCPT TO:<carol@localhost>\r\nRCPT TO:<bob@localhost>\r\n"
               "DATA\r\nSubject: two\r\n\r\nsecond\r\n.\r\n"
               "RSET\r\nNOOP\r\nQUIT\r\nMAIL FROM:<after@example.org>\r\n")
    path = tmp_path / "session"
    path.write_bytes(session.encode())
    with open(path, "rb") as f:
        r = subprocess.run([str(SENDMAIL), "-bs"], stdin=f, capture_output=True,
                           env=sendmail_env(instance), timeout=20)
    assert (r.returncode, r.stderr) == (0, b"")
    replies = smtp_replies(r.stdout.decode())
    assert [c for c, _ in replies] == [220, 250, 250, 250, 354, 250, 250, 250, 250, 354, 250,
                                       250, 250, 221], replies
    assert "DSN" in replies[1][1] and not {"STARTTLS", "AUTH PLAIN LOGIN"} & set(replies[1][1])
    assert replies[5][1] == replies[10][1] == ["2.0.0 Ok: queued"]
    bob = sorted(f.read_bytes() for f in instance.wait_delivered("bob", 2))
    [carol] = instance.wait_delivered("carol", 1)
    assert [header_values(m, "Subject") for m in bob] == [["one"], ["two"]], bob
    assert header_values(carol.read_bytes(), "Subject") == ["two"]
    for sender in ("a@example.org", "b@example.org"):
        pickup_qid(instance, sender)   # each came in as a local submission
    instance.wait_log(r"^connect from localhost\[127\.0\.0\.1\]$", program="smtpd")
    instance.wait_log(r"^disconnect from localhost\[127\.0\.0\.1\] ehlo=1 mail=2 rcpt=3 "
                      r"data=2 rset=1 noop=1 quit=1 commands=11$", program="smtpd")
    assert not instance.find_log(r"after@example\.org")


def test_bs_end_of_input_inside_data_loses_that_message_only(instance):
    """The input ends in the middle of a message: the message before it is
    queued and delivered, the cut one leaves nothing behind (no maildrop
    file, no delivery), and the exit status says something was lost."""
    session = ("HELO client.example\r\nMAIL FROM:<a@example.org>\r\n"
               "RCPT TO:<bob@localhost>\r\nDATA\r\nSubject: whole\r\n\r\nall of it\r\n.\r\n"
               "MAIL FROM:<a@example.org>\r\nRCPT TO:<carol@localhost>\r\nDATA\r\n"
               "Subject: cut\r\n\r\nhalf of")
    r = run_sendmail(instance, ["-bs"], session)
    assert r.returncode == EX_TEMPFAIL, r
    replies = smtp_replies(r.stdout.decode())
    assert [c for c, _ in replies] == [220, 250, 250, 250, 354, 250, 250, 250, 354], replies
    assert not [p for p in (instance.queue / "maildrop").iterdir() if p.name.startswith("tmp.")]
    [whole] = instance.wait_delivered("bob", 1)
    assert header_values(whole.read_bytes(), "Subject") == ["whole"]
    instance.wait_log(r"^lost connection after DATA \(\d+ bytes\) from localhost\[127\.0\.0\.1\]$",
                      program="smtpd")
    instance.wait_log(r"^\w+: removed$", program="qmgr")
    assert maildrop_files(instance) == [] and not instance.delivered("carol")
    assert len(instance.find_log(r"^\w+: uid=\d+ from=<a@example\.org>$", program="pickup")) == 1


def test_bs_end_of_input_between_transactions_is_a_normal_end(instance):
    r = run_sendmail(instance, ["-bs"], "EHLO client.example\r\nNOOP\r\nVRFY bob\r\n")
    assert (r.returncode, r.stderr) == (0, b"")
    assert [c for c, _ in smtp_replies(r.stdout.decode())] == [220, 250, 250, 252]


def test_bs_is_a_local_submission_that_smtpd_restrictions_do_not_apply_to(make_instance):
    inst = make_instance(extra_main=["smtpd_client_restrictions = reject"])
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd("EHLO client.example")[0] == 250
        assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<bob@localhost>")[0] == 554
    session = ("EHLO client.example\r\nMAIL FROM:<a@example.org>\r\n"
               "RCPT TO:<bob@localhost>\r\nRCPT TO:<someone@elsewhere.example>\r\n"
               "RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<bob@localhost>\r\n"
               "DATA\r\nSubject: trusted\r\n\r\nx\r\n.\r\nQUIT\r\n")
    r = run_sendmail(inst, ["-bs"], session)
    assert (r.returncode, r.stderr) == (0, b"")
    assert [c for c, _ in smtp_replies(r.stdout.decode())] == [220, 250, 250, 250, 250, 250, 250,
                                                              250, 354, 250, 221]
    [copy] = inst.wait_delivered("bob", 1)
    assert header_values(copy.read_bytes(), "Subject") == ["trusted"]


def test_dsn_options_origin_and_uid_reach_the_queue_file(make_instance):
    inst = start_without_qmgr(make_instance)
    r = run_sendmail(inst, ["-N", "success,delay", "-R", "hdrs", "-V", "env-42", "-t", "bob"],
                     "To: carol\nSubject: dsn\n\nx\n")
    assert r.returncode == 0, r.stderr
    recs = parse_records(complete_incoming(inst).read_bytes())
    types = [t for t, _, _ in recs]
    attrs = dict(p.decode().split("=", 1) for t, p, _ in recs if t == "A")
    assert attrs["origin"] == "local" and attrs["uid"] == str(UID), attrs
    assert attrs["dsn_ret"] == "HDRS" and attrs["dsn_envid"] == "env-42", attrs
    assert not {"full_name", "extract", "dsn_notify"} & set(attrs), attrs
    assert [p for t, p, _ in recs if t == "S"] == [f"{ME}@{HOSTNAME}".encode()]
    rcpts = [(i, p.decode()) for i, (t, p, _) in enumerate(recs) if t == "R"]
    assert [a for _, a in rcpts] == [f"bob@{HOSTNAME}", f"carol@{HOSTNAME}"], recs
    content = types.index("M")
    assert rcpts[0][0] < content < rcpts[1][0], types   # carol came from To:
    for i, addr in rcpts:
        # Each R is preceded by its own N (SUCCESS|DELAY = 10) and O (as typed).
        before = recs[max(j for j, t in enumerate(types[:i]) if t in "ZTSARMC") + 1:i]
        assert sorted((t, p) for t, p, _ in before) == [
            ("N", b"10"), ("O", addr.split("@")[0].encode())], (addr, before)


def test_malformed_maildrop_files_are_moved_aside_not_dropped(make_instance):
    inst = make_instance()
    inst.stop()
    r = run_sendmail(inst, ["bob"], "Subject: will be broken\n\nx\n")
    assert r.returncode == 0, r.stderr
    [broken] = maildrop_files(inst)
    data = broken.read_bytes()
    assert data.endswith(b"E\x00")
    broken.chmod(0o600)
    broken.write_bytes(data[:-2])             # no end record
    junk = inst.queue / "maildrop" / "not-a-queue-id"
    junk.write_bytes(b"junk")
    inst.start()
    name = broken.name
    inst.wait_log(rf"^warning: maildrop/{name}: no end record; moved to corrupt/{name}$",
                  program="pickup")
    inst.wait_log(r"^warning: maildrop/not-a-queue-id: unexpected file name; moved to "
                  r"corrupt/not-a-queue-id$", program="pickup")
    assert (inst.queue / "corrupt" / name).read_bytes() == data[:-2]
    assert (inst.queue / "corrupt" / "not-a-queue-id").read_bytes() == b"junk"
    assert maildrop_files(inst) == []
    # The next good message is delivered, and the broken one never is.
    r = run_sendmail(inst, ["bob"], "Subject: good\n\ny\n")
    assert r.returncode == 0, r.stderr
    [only] = inst.wait_delivered("bob", 1)
    assert header_values(only.read_bytes(), "Subject") == ["good"]


def test_mailq_and_bp_list_the_queue(make_instance, tmp_path):
    inst = make_instance()
    inst.stop()                     # the message waits in maildrop/
    r = run_sendmail(inst, ["bob"], "Subject: queued\n\nx\n")
    assert r.returncode == 0, r.stderr
    [waiting] = maildrop_files(inst)
    mailq = tmp_path / "mailq"
    mailq.symlink_to(SENDMAIL)
    by_name = run_sendmail(inst, [], sendmail=mailq)
    by_flag = run_sendmail(inst, ["-bp"])
    assert by_name.returncode == 0 and by_flag.returncode == 0, (by_name, by_flag)
    assert waiting.name.encode() in by_name.stdout, by_name.stdout
    assert by_name.stdout == by_flag.stdout


def test_bp_without_postqueue_says_what_is_missing(instance, tmp_path):
    lonely = tmp_path / "sendmail"
    shutil.copy(SENDMAIL, lonely)
    r = run_sendmail(instance, ["-bp"], sendmail=lonely)
    assert r.returncode == EX_UNAVAILABLE
    assert f"{tmp_path}/postqueue".encode() in r.stderr, r.stderr


def test_newaliases_bi_and_I_rebuild_the_alias_table(make_instance, tmp_path):
    inst = make_instance(start=False)
    aliases = inst.etc / "aliases"
    aliases.write_text("postmaster: root\nfriends: bob\n")
    inst.append_main_cf(f"alias_database = cdb:{aliases}", f"alias_maps = cdb:{aliases}")
    built = inst.etc / "aliases.cdb"
    newaliases = tmp_path / "newaliases"
    newaliases.symlink_to(SENDMAIL)
    for how in ([newaliases], [SENDMAIL, "-bi"], [SENDMAIL, "-I"]):
        if built.exists():
            built.unlink()
        r = run_sendmail(inst, [str(a) for a in how[1:]], sendmail=how[0])
        assert r.returncode == 0, (how, r.stderr)
        assert built.exists(), how


def test_command_line_mistakes_are_usage_errors(instance):
    for args in (["-t", "-bp"], [], ["-q", "bob"], ["-bz"], ["-n", "bob"], ["-f"]):
        r = run_sendmail(instance, args, "Subject: x\n\nx\n")
        assert r.returncode == EX_USAGE, (args, r.returncode, r.stderr)
    r = run_sendmail(instance, ["-t"], "Subject: nobody\n\nx\n")
    assert r.returncode == EX_USAGE
    assert b"No recipient addresses found in message header" in r.stderr
    # Ignored legacy options still deliver.
    r = run_sendmail(instance, ["-oem", "-om", "-o7", "-Am", "-U", "-m", "-L", "x", "-h", "5",
                                "-Ox=y", "-B", "8BITMIME", "-odi", "bob"], "Subject: legacy\n\nx\n")
    assert r.returncode == 0, r.stderr
    instance.wait_delivered("bob", 1)
    assert maildrop_files(instance) == []
