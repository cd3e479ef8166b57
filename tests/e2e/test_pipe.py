"""The pipe delivery agent (pipe/, Postfix's pipe(8)) on real instances: a
recorder script as the command writes down its argv, environment, working
directory and standard input for each run, and exits as its first argument
says (exitN, dsnX.Y.Z, sleep). Covered: every macro and flag, the
environment (export_environment, PATH, MAIL_CONFIG), exit statuses giving
sent / deferred / bounced with Postfix's DSN codes and texts, the time limit,
one command for all recipients or one per recipient, size=, the D loop
check, null_sender= and eol=, reinjection through sendmail, pipe services
reached from transport_maps, virtual_transport and mailbox_transport, and
bad master.cf lines refused once with their file and line.
"""

import json
import os
import re
import signal
import time
from pathlib import Path

from postern_instance import (BUILD, DEFAULT_SERVICES, HELO, SENDER, crlf, is_alive,
                              process_table, simple_message, wait_until)

RECORDER = r'''#!/usr/bin/python3
# Records one run of a pipe command, then exits as its first argument says.
import json, os, sys, time
RECORD_DIR = @RECORD_DIR@
data = sys.stdin.buffer.read()
with open("/proc/self/environ", "rb") as f:
    env = dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if b"=" in e)
rec = {"argv": sys.argv[1:], "env": env, "cwd": os.getcwd(), "uid": os.getuid(),
       "stdin": data.decode("utf-8", "replace")}
path = os.path.join(RECORD_DIR, "%d.%d.json" % (time.time_ns(), os.getpid()))
with open(path + ".tmp", "w") as f:
    json.dump(rec, f)
os.rename(path + ".tmp", path)
what = sys.argv[1] if len(sys.argv) > 1 else ""
if what.startswith("exit"):
    code = int(what[4:].split("+")[0] or 0)
    print("said by %s" % what)
    sys.exit(code)
if what.startswith("dsn"):
    print("%s custom text" % what[3:])
    sys.exit(1)
if what.startswith("sleep"):
    with open(os.path.join(RECORD_DIR, "sleeper.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
'''



class Recorder:
    def __init__(self, root):
        self.dir = Path(root) / "rec"
        self.dir.mkdir()
        self.script = Path(root) / "recorder.py"
        self.script.write_text(RECORDER.replace("@RECORD_DIR@", repr(str(self.dir))))
        os.chmod(self.script, 0o755)

    def runs(self):
        return [json.loads(p.read_text()) for p in sorted(self.dir.glob("*.json"))]

    def wait_runs(self, n, timeout=30):
        return wait_until(lambda: (lambda r: r if len(r) >= n else None)(self.runs()),
                          timeout, what=f"{n} runs of the pipe command")


def pipe_instance(make_instance, services, extra_main=(), start=True):
    """An instance with extra master.cf lines (services: text in which
    {script} stands for the recorder's path); returns (inst, recorder)."""
    inst = make_instance(start=False)
    rec = Recorder(inst.root)
    inst.write_master_cf(f"127.0.0.1:{inst.port} inet n - n - - smtpd\n" + DEFAULT_SERVICES
                         + services.replace("{script}", str(rec.script)))
    inst.append_main_cf("recipient_delimiter = +", *extra_main)
    if start:
        inst.start()
    return inst, rec


def log_status(inst, rcpt, status, timeout=30):
    """The delivery log line of rcpt with this status, from the pipe agent."""
    return inst.wait_log(rf"to=<{re.escape(rcpt)}>, .*status={status} ", program="pipe",
                         timeout=timeout)[0].text


def test_macros_flags_and_environment(make_instance):
    inst, rec = pipe_instance(
        make_instance,
        "mypipe unix - n n - - pipe flags=DORFhqu.>B user=nobody\n"
        "  argv={script} ${user} ${extension} ${mailbox} ${domain} ${original_recipient}\n"
        "  ${recipient} ${sender} ${nexthop} ${size} ${queue_id} ${client_address}\n"
        "  ${client_hostname} ${client_helo} ${client_protocol} ${sasl_method}\n"
        "  ${sasl_username} $(sender) $queue_id { two words } pre-$$-post\n",
        ["transport_maps = inline:{ pipe.test=mypipe:NH.Example }",
         "mypipe_destination_recipient_limit = 1"])
    body = "From me\n.dot\nlast line"
    qid = inst.send(simple_message("macros", body=body), ["Bob+Ext@PIPE.test"],
                    sender='"Send Er"@Example.ORG')
    [run] = rec.wait_runs(1)
    size = re.search(r"size=(\d+)",
                     inst.wait_log(rf"{qid}: from=", program="qmgr")[0].text)[1]
    assert run["argv"] == [
        "bob", "ext", "bob+ext", "pipe.test", "bob+ext@pipe.test", "bob+ext@pipe.test",
        '"Send Er"@Example.ORG', "nh.example", size, qid, "127.0.0.1", "unknown", HELO,
        "ESMTP", "", "", '"Send Er"@Example.ORG', qid, "two words", "pre-$-post"]
    # Only what export_environment names, PATH, and our configuration.
    assert run["env"]["PATH"] == "/usr/bin:/bin"
    assert run["env"]["MAIL_CONFIG"] == str(inst.etc)
    assert set(run["env"]) <= {"PATH", "MAIL_CONFIG", "TZ", "LANG"}, run["env"]
    assert run["cwd"] == str(inst.queue)
    assert run["uid"] == os.getuid()   # instance mode: the instance user, not user=
    stdin = run["stdin"]
    lines = stdin.split("\n")
    # White space in a From_ line would confuse mbox readers (mail_copy.c).
    assert re.fullmatch(r'From "Send_Er"@Example\.ORG \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}',
                        lines[0]), lines[0]
    assert lines[1:4] == ['Return-Path: <"Send Er"@Example.ORG>',
                          "X-Original-To: Bob+Ext@PIPE.test", "Delivered-To: Bob+Ext@PIPE.test"]
    assert stdin.endswith("\n\n>From me\n..dot\nlast line\n\n"), stdin[-80:]
    line = log_status(inst, "Bob+Ext@PIPE.test", "sent")
    assert "relay=mypipe, " in line and "dsn=2.0.0" in line
    assert line.endswith("status=sent (delivered via mypipe service)"), line
    inst.wait_queue_empty()


def test_exit_status_gives_sent_deferred_or_bounced(make_instance):
    inst, rec = pipe_instance(
        make_instance, "mypipe unix - n n - - pipe user=nobody argv={script} ${user}\n",
        ["transport_maps = inline:{ pipe.test=mypipe }"])
    cases = {
        "exit0": ("sent", "2.0.0", "delivered via mypipe service (said by exit0)"),
        "exit75": ("deferred", "4.3.0", "temporary failure. Command output: said by exit75"),
        "exit67": ("bounced", "5.1.1", "user unknown. Command output: said by exit67"),
        "exit77": ("bounced", "5.7.0", "permission denied. Command output: said by exit77"),
        "exit1": ("bounced", "5.3.0", f'Command died with status 1: "{rec.script}". '
                                      "Command output: said by exit1"),
        "dsn5.7.9": ("bounced", "5.7.9", "custom text"),
        "dsn4.2.2": ("deferred", "4.2.2", "custom text"),
    }
    qids = {who: inst.send(simple_message(who), [f"{who}@pipe.test"]) for who in cases}
    for who, (status, dsn, text) in cases.items():
        line = log_status(inst, f"{who}@pipe.test", status)
        assert line.startswith(f"{qids[who]}: to=<{who}@pipe.test>, relay=mypipe, "), line
        assert line.endswith(f"dsn={dsn}, status={status} ({text})"), line
    # The deferred ones wait in the queue; the others are gone.
    for who in ("exit0", "exit67", "exit1"):
        inst.wait_log(rf"{qids[who]}: removed", program="qmgr")
    queued = {p.name for p in inst.queue_files()}
    assert qids["exit75"] in queued and qids["dsn4.2.2"] in queued


def test_time_limit_kills_the_command(make_instance):
    inst, rec = pipe_instance(
        make_instance, "slowpipe unix - n n - - pipe user=nobody argv={script} ${user}\n",
        ["transport_maps = inline:{ pipe.test=slowpipe }", "slowpipe_time_limit = 2s"])
    start = time.monotonic()
    inst.send(simple_message("slow"), ["sleep@pipe.test"])
    line = log_status(inst, "sleep@pipe.test", "bounced")
    assert time.monotonic() - start < 30
    assert line.endswith(f'dsn=5.3.0, status=bounced (Command time limit exceeded: '
                         f'"{rec.script}")'), line
    assert inst.find_log(r"command time limit exceeded", program="pipe")
    pid = int((rec.dir / "sleeper.pid").read_text())
    wait_until(lambda: not is_alive(pid), 10, what="the timed-out command to be gone")


def test_recipients_share_a_command_unless_the_limit_is_one(make_instance):
    inst, rec = pipe_instance(
        make_instance,
        "many unix - n n - - pipe user=nobody argv={script} exit0 ${recipient} ${sender}\n"
        "one unix - n n - - pipe user=nobody argv={script} exit0 ${recipient}\n",
        ["transport_maps = inline:{ many.test=many, one.test=one }",
         "one_destination_recipient_limit = 1"])
    inst.send(simple_message("many"), ["a@many.test", "b@many.test"], sender="")
    [run] = rec.wait_runs(1)
    assert run["argv"] == ["exit0", "a@many.test", "b@many.test", "MAILER-DAEMON"]
    for r in ("a@many.test", "b@many.test"):
        assert log_status(inst, r, "sent").endswith("(delivered via many service (said by exit0))")
    inst.send(simple_message("one"), ["a@one.test", "b@one.test"])
    runs = rec.wait_runs(3)
    assert sorted(r["argv"][1] for r in runs[1:]) == ["a@one.test", "b@one.test"]
    assert all(len(r["argv"]) == 2 for r in runs[1:])
    inst.wait_queue_empty()


def test_size_limit_loop_check_null_sender_and_eol(make_instance):
    inst, rec = pipe_instance(
        make_instance,
        "small unix - n n - - pipe flags=D user=nobody size=2000 argv={script} exit0\n"
        "crlf unix - n n - - pipe flags=R user=nobody null_sender= eol=\\r\\n\n"
        "  argv={script} exit0 ${sender}\n",
        ["transport_maps = inline:{ small.test=small, crlf.test=crlf }",
         "small_destination_recipient_limit = 1"])
    inst.send(simple_message("big", body="x" * 3000 + "\n"), ["big@small.test"])
    assert log_status(inst, "big@small.test", "bounced").endswith(
        "dsn=5.2.3, status=bounced (message too large)")
    inst.send(simple_message("loop", extra_headers=["Delivered-To: Loop@Small.Test"]),
              ["loop@small.test"])
    assert log_status(inst, "loop@small.test", "bounced").endswith(
        "dsn=5.4.6, status=bounced (mail forwarding loop for loop@small.test)")
    assert rec.runs() == []   # neither ran the command
    inst.send(simple_message("crlf", body="one\ntwo\n"), ["x@crlf.test"], sender="")
    [run] = rec.wait_runs(1)
    assert run["argv"] == ["exit0", ""]   # null_sender= empty: an empty argument
    assert run["stdin"].startswith("Return-Path: <>\r\n")
    assert run["stdin"].endswith("\r\n\r\none\r\ntwo\r\n")
    assert "\n" not in run["stdin"].replace("\r\n", "")


def test_reinjection_through_sendmail(make_instance):
    """The content-filter pattern: a pipe command hands the message back to
    Postern with sendmail -G -i -f ${sender} -- RECIPIENT."""
    inst, rec = pipe_instance(
        make_instance,
        "filter unix - n n - - pipe flags=Rq user=nobody null_sender=\n"
        f"  argv={BUILD}/bin/sendmail -G -i -f ${{sender}} -- ${{user}}@${{domain}}\n",
        ["transport_maps = inline:{ alice+filter@localhost=filter }"])
    qid = inst.send(simple_message("filtered", body="through the filter\n"),
                    ["alice+filter@localhost"])
    assert log_status(inst, "alice+filter@localhost", "sent").startswith(
        f"{qid}: to=<alice+filter@localhost>, relay=filter, ")
    [copy] = inst.wait_delivered("alice")
    data = copy.read_bytes()
    assert data.startswith(f"Return-Path: <{SENDER}>\n".encode()), data[:200]
    assert b"Subject: filtered\n" in data and data.endswith(b"through the filter\n")
    inst.wait_queue_empty()


def test_virtual_transport_and_mailbox_transport(make_instance):
    inst, rec = pipe_instance(
        make_instance,
        "mypipe unix - n n - - pipe user=nobody argv={script} exit0 ${recipient}\n"
        "  ${original_recipient} ${nexthop}\n",
        ["virtual_mailbox_domains = hosted.test",
         "virtual_mailbox_maps = inline:{ box@hosted.test=ignored }",
         "virtual_transport = mypipe",
         "mailbox_transport = mypipe"], start=False)
    (inst.etc / "aliases").write_text("team: bob, carol\n")
    inst.start()
    inst.send(simple_message("hosted"), ["box@hosted.test"])
    [run] = rec.wait_runs(1)
    assert run["argv"] == ["exit0", "box@hosted.test", "box@hosted.test", "hosted.test"]
    # local expands the alias, and hands each member's mailbox to mypipe,
    # which logs it under its own name.
    qid = inst.send(simple_message("team"), ["team@localhost"])
    runs = rec.wait_runs(3)
    got = sorted(tuple(r["argv"][1:]) for r in runs[1:])
    assert got == [("bob@mx.test.example", "team@localhost", "localhost"),
                   ("carol@mx.test.example", "team@localhost", "localhost")]
    for member in ("bob", "carol"):
        line = log_status(inst, f"{member}@mx.test.example", "sent")
        assert line.startswith(f"{qid}: to=<{member}@mx.test.example>, "
                               "orig_to=<team@localhost>, relay=mypipe, "), line
    inst.wait_queue_empty()
    assert not inst.find_log(r"to=<team@localhost>", program="local")


BAD_LINES = [
    ("pipe user=nobody", "missing argv= attribute"),
    ("pipe flags=RZ user=nobody argv=/bin/true", "unknown flag: Z"),
    ("pipe user=:mail argv=/bin/true", "user= needs a user name"),
    ("pipe argv=/bin/true", "missing user= attribute"),
    ("pipe user=nobody argv=/bin/true ${nosuch}", 'unknown macro name: "nosuch"'),
    ("pipe user=nobody argv=/bin/true ${recipient?x}", 'unknown macro name: "recipient?x"'),
    ("pipe user=nobody directory=rel argv=/bin/true", "directory= needs an absolute path"),
]


def test_bad_master_cf_lines_are_one_error_each(make_instance):
    """Each bad pipe line is said once, with its file and line, by postern
    start and by master; that service is not started (so nothing dies and
    restarts over and over), mail routed to it waits in the queue, and the
    rest of the mail system runs."""
    services = "".join(f"bad{i} unix - n n - - {line}\n" for i, (line, _) in enumerate(BAD_LINES))
    routes = ", ".join(f"bad{i}.test=bad{i}" for i in range(len(BAD_LINES)))
    inst, rec = pipe_instance(
        make_instance, services + "good unix - n n - - pipe user=nobody argv={script} exit0\n",
        [f"transport_maps = inline:{{ {routes}, good.test=good }}"], start=False)
    out = inst.start()
    first = 2 + DEFAULT_SERVICES.count("\n")   # after the smtpd line and the defaults
    for i, (_, why) in enumerate(BAD_LINES):
        said = f"{inst.etc}/master.cf, line {first + i}: service bad{i}/unix (pipe): {why}"
        assert said in out, out
        [line] = inst.find_log(re.escape(said), program="master")
        assert line.text.startswith("error: ") and line.text.endswith(
            "service not started, mail routed to it stays in the queue"), line.text
    inst.send(simple_message("good"), ["x@good.test"])
    log_status(inst, "x@good.test", "sent")
    qid = inst.send(simple_message("bad"), ["x@bad1.test"])
    inst.wait_log(rf"{qid}: to=<x@bad1.test>, relay=none, .*status=deferred", program="qmgr")
    assert qid in {p.name for p in inst.queue_files()}
    assert not inst.find_log(r"fatal")
    assert not inst.find_log(r"exit status|throttl", program="master")
    assert len(rec.runs()) == 1


def test_reload_with_a_bad_pipe_line(make_instance):
    inst, rec = pipe_instance(
        make_instance, "good unix - n n - - pipe user=nobody argv={script} exit0\n",
        ["transport_maps = inline:{ good.test=good, bad.test=bad }"])
    with open(inst.etc / "master.cf", "a") as f:
        f.write("bad unix - n n - - pipe flags=Q user=nobody argv=/bin/true\n")
    rc, out = inst.postern("reload")
    assert rc == 0 and "service bad/unix (pipe): unknown flag: Q" in out, out
    inst.wait_log(r"service bad/unix \(pipe\): unknown flag: Q .*service not started",
                  program="master")
    inst.send(simple_message("good"), ["x@good.test"])
    log_status(inst, "x@good.test", "sent")
    qid = inst.send(simple_message("bad"), ["x@bad.test"])
    inst.wait_log(rf"{qid}: to=<x@bad.test>, relay=none, .*status=deferred", program="qmgr")
    time.sleep(1)
    assert len(inst.find_log(r"unknown flag: Q", program="master")) == 1   # no retry loop
    assert not inst.find_log(r"exit status|throttl", program="master")


def test_mailbox_transport_that_is_not_there_defers(make_instance):
    """local cannot hand the mailbox over: it says so and logs the deferral
    itself (nobody else will)."""
    inst, _ = pipe_instance(make_instance, "", ["mailbox_transport = nosuch"])
    qid = inst.send(simple_message("nowhere"), ["zoe@localhost"])
    line = inst.wait_log(rf"{qid}: to=<zoe@localhost>, relay=local, ", program="local")[0].text
    assert line.endswith("dsn=4.3.0, status=deferred (mail transport unavailable)"), line
    assert inst.find_log(r"connect to private/nosuch: ", program="local")
    assert not inst.delivered("zoe")
