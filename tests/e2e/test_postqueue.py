"""postqueue: -p in Postfix's mailq format byte for byte, -j as JSON lines
with Postfix's field names, -f, -i and -s against a real instance.

The listing tests build a fixture queue with queue_fixture.py (the layout
of lib/queue_file.h, defer logs as bounce writes them) in an instance that
is not started, so nothing moves under them; TZ=UTC fixes the arrival
column. The expected -p text is written out literally from Postfix's
showq/postqueue formats ("%-11s %7ld %20.20s %s", recipients after 41
spaces, a reason right-aligned to column 78 whenever it changes).
"""

import json
import os
import signal
import subprocess
import time

import pytest

from postern_instance import BUILD, SENDER, simple_message, wait_until
from postfix_reference import started_postfix
from queue_fixture import Rcpt, find_message, make_queue_file, write_log

POSTQUEUE = BUILD / "bin" / "postqueue"
CONTENT = "Subject: x\n\nhello\n"   # 18 bytes
QUEUES = ("incoming", "active", "deferred", "hold", "maildrop", "defer", "bounce", "corrupt")


def postqueue(inst, *args, tz="UTC", timeout=30):
    env = dict(os.environ, TZ=tz)
    env.pop("MAIL_CONFIG", None)
    p = subprocess.run([str(POSTQUEUE), "-c", str(inst.etc), *args], capture_output=True,
                       env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8", "replace")


@pytest.fixture
def fixture_queue(make_instance):
    """An instance that is configured but not running, with empty queues."""
    def make(extra_main=()):
        inst = make_instance(extra_main=extra_main, start=False)
        for d in QUEUES:
            (inst.queue / d).mkdir(exist_ok=True)
        return inst
    return make


def populate(inst):
    """One message in each of active, deferred (null sender, reasons, a
    finished recipient, one without a reason) and hold, with fixed ids."""
    make_queue_file(inst.queue, "active", "sender@example.org", ["rcpt1@example.com"], CONTENT,
                    arrival=1700000000.25, qid="1ActiveAAAAA01")
    qid, r = make_queue_file(
        inst.queue, "deferred", "",
        [Rcpt("bob@example.com"), Rcpt("done@example.com", done=True),
         Rcpt("carol@example.com", orig="carol.c@example.org"), Rcpt("dave@example.net"),
         Rcpt("eve@example.net")],
        "x" * 3000, arrival=1700003600, qid="1DeferredBBB02")
    refused = "connect to mx.example.com[192.0.2.1]:25: Connection refused"
    write_log(inst.queue, "defer", qid, [
        dict(rcpt="dave@example.net", offset=r[3].offset, dsn="4.4.1",
             reason="connect to mx.example.net[192.0.2.2]:25: Connection timed out", relay="none"),
        dict(rcpt="bob@example.com", offset=r[0].offset, dsn="4.4.1", reason="an older reason",
             relay="none"),
        dict(rcpt="carol@example.com", offset=r[2].offset, dsn="4.4.1", reason=refused,
             relay="none"),
        # A later attempt: its reason replaces the older one for bob.
        dict(rcpt="bob@example.com", offset=r[0].offset, dsn="4.4.1", reason=refused,
             relay="none"),
    ])
    make_queue_file(inst.queue, "hold", "user@example.org", ["x@example.com"], CONTENT,
                    arrival=1700007200, qid="1HoldCCCCCCC03")


EXPECTED_MAILQ = (
    "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
    "1ActiveAAAAA01*      18 Tue Nov 14 22:13:20  sender@example.org\n"
    "                                         rcpt1@example.com\n"
    "\n"
    "1DeferredBBB02    3000 Tue Nov 14 23:13:20  MAILER-DAEMON\n"
    "               (connect to mx.example.net[192.0.2.2]:25: Connection timed out)\n"
    "                                         dave@example.net\n"
    "                 (connect to mx.example.com[192.0.2.1]:25: Connection refused)\n"
    "                                         bob@example.com\n"
    "                                         carol@example.com\n"
    "                                                          (reason unavailable)\n"
    "                                         eve@example.net\n"
    "\n"
    "1HoldCCCCCCC03!      18 Wed Nov 15 00:13:20  user@example.org\n"
    "                                         x@example.com\n"
    "\n"
    "-- 2 Kbytes in 3 Requests.\n"
)


def test_mailq_format_byte_exact(fixture_queue):
    inst = fixture_queue()
    populate(inst)
    rc, out, err = postqueue(inst, "-p")
    assert (rc, err) == (0, "")
    assert out == EXPECTED_MAILQ


def postfix_long_listing(msgs):
    """Postfix's enable_long_queue_ids layout, computed from its formats."""
    out = []
    for i, (id_status, size, when, sender, rcpts) in enumerate(msgs):
        out.append("%-17s %8s %-19s %s\n" % ("----Queue ID-----", "--Size--",
                                              "---Arrival Time----", "--Sender/Recipient------")
                   if i == 0 else "\n")
        out.append("%-17s %8d %19.19s %s\n" % (id_status, size, time.asctime(time.gmtime(when)),
                                               sender))
        for r in rcpts:
            out.append("%-17s %8s %-19s %s\n" % ("", "", "", r))
    total = sum(m[1] for m in msgs)
    out.append("\n-- %d Kbytes in %d Request%s.\n" % (total // 1024, len(msgs),
                                                      "" if len(msgs) == 1 else "s"))
    return "".join(out)


def test_mailq_long_id_layout(fixture_queue):
    inst = fixture_queue(["enable_long_queue_ids = yes"])
    a, _ = make_queue_file(inst.queue, "incoming", "a@example.org", ["b@example.com"], CONTENT,
                           arrival=1700000000)
    h, _ = make_queue_file(inst.queue, "hold", "", ["c@example.com", "d@example.com"],
                           "y" * 5000, arrival=1700000100)
    rc, out, err = postqueue(inst, "-p")
    assert (rc, err) == (0, "")
    assert out == postfix_long_listing([
        (a, 18, 1700000000, "a@example.org", ["b@example.com"]),
        (h + "!", 5000, 1700000100, "MAILER-DAEMON", ["c@example.com", "d@example.com"]),
    ])


def test_empty_queue(fixture_queue):
    inst = fixture_queue()
    assert postqueue(inst, "-p") == (0, "Mail queue is empty\n", "")
    assert postqueue(inst, "-j") == (0, "", "")


def test_one_request_singular_and_skips(fixture_queue):
    """A single message says "Request."; a file cleanup is still writing
    (mode 0600 in incoming/), its temporary files and junk are not listed;
    a quoted local part is shown in external form."""
    inst = fixture_queue()
    make_queue_file(inst.queue, "deferred", "sender@example.org", ['john doe@example.com'],
                    CONTENT, arrival=1700000000, qid="1OnlyOneAAA000")
    make_queue_file(inst.queue, "incoming", "w@example.org", ["w@example.com"], CONTENT, mode=0o600)
    (inst.queue / "incoming" / "tmp.123.0").write_bytes(b"partial")
    (inst.queue / "hold" / "not-a-queue-id").write_bytes(b"junk")
    rc, out, err = postqueue(inst, "-p")
    assert (rc, err) == (0, "")
    assert out == (
        "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"
        "1OnlyOneAAA000      18 Tue Nov 14 22:13:20  sender@example.org\n"
        '                                         "john doe"@example.com\n'
        "\n"
        "-- 0 Kbytes in 1 Request.\n")


def test_json_lines(fixture_queue):
    inst = fixture_queue()
    populate(inst)
    rc, out, err = postqueue(inst, "-j")
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 3 and out.endswith("\n")
    objs = [json.loads(line) for line in lines]
    assert [(o["queue_name"], o["queue_id"]) for o in objs] == [
        ("active", "1ActiveAAAAA01"), ("deferred", "1DeferredBBB02"), ("hold", "1HoldCCCCCCC03")]
    # Postfix's member order and types.
    assert list(objs[0]) == ["queue_name", "queue_id", "arrival_time", "message_size",
                             "forced_expire", "sender", "recipients"]
    assert objs[0]["arrival_time"] == 1700000000 and objs[0]["message_size"] == 18
    assert objs[0]["forced_expire"] is False
    assert objs[0]["recipients"] == [{"address": "rcpt1@example.com"}]
    d = objs[1]
    assert d["sender"] == "MAILER-DAEMON" and d["message_size"] == 3000
    refused = "connect to mx.example.com[192.0.2.1]:25: Connection refused"
    assert d["recipients"] == [
        {"address": "dave@example.net",
         "delay_reason": "connect to mx.example.net[192.0.2.2]:25: Connection timed out"},
        {"address": "bob@example.com", "delay_reason": refused},
        {"address": "carol@example.com", "delay_reason": refused},
        {"address": "eve@example.net"},
    ]


def test_json_escapes(fixture_queue):
    """Quotes, backslashes and control characters in a reason, and UTF-8
    in an address, give lines that parse back to the same text."""
    inst = fixture_queue()
    qid, r = make_queue_file(inst.queue, "deferred", "s@example.org",
                             [Rcpt("x@caf\u00e9.example"), Rcpt("x@example.com")],
                             CONTENT, qid="1EscapesAAA000")
    write_log(inst.queue, "defer", qid, [dict(rcpt="x@example.com", offset=r[1].offset,
                                              dsn="4.0.0", reason='said "no" \\ \t twice')])
    rc, out, err = postqueue(inst, "-j")
    assert (rc, err) == (0, "")
    o = json.loads(out)
    assert o["recipients"] == [{"address": "x@example.com", "delay_reason": 'said "no" \\ \t twice'},
                               {"address": "x@caf\u00e9.example"}]


# --- against a running instance -------------------------------------------------


def stop_qmgr(inst):
    pid = inst.wait_pids("qmgr")[0]
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_lists_live_queue(make_instance):
    """Mail queued behind a stopped qmgr is listed from incoming/ with its
    real size; once qmgr runs again the queue empties."""
    inst = make_instance()
    pid = stop_qmgr(inst)
    try:
        ids = [inst.send(simple_message(f"m{i}"), rcpts=["alice@localhost", "bob@localhost"])
               for i in range(3)]
        rc, out, err = postqueue(inst, "-j")
        assert (rc, err) == (0, "")
        objs = [json.loads(line) for line in out.splitlines()]
        assert sorted(o["queue_id"] for o in objs) == sorted(ids)
        for o in objs:
            assert o["queue_name"] == "incoming" and o["sender"] == SENDER
            assert [r["address"] for r in o["recipients"]] == ["alice@localhost", "bob@localhost"]
            assert o["message_size"] > 100
        rc, out, _ = postqueue(inst, "-p")
        assert out.endswith(f" in 3 Requests.\n") and all(i in out for i in ids)
    finally:
        os.kill(pid, signal.SIGCONT)
    inst.wait_queue_empty()
    assert postqueue(inst, "-p")[1] == "Mail queue is empty\n"


def deferred_fixture(inst, rcpt, subject):
    """A message in deferred/ whose next attempt is an hour away."""
    msg = simple_message(subject, test_id=subject)
    qid, _ = make_queue_file(inst.queue, "deferred", SENDER, [rcpt], msg,
                             mtime=time.time() + 3600)
    return qid


def test_flush_delivers_deferred(make_instance):
    inst = make_instance()
    qid = deferred_fixture(inst, "alice@localhost", "flushed")
    time.sleep(0.5)
    assert find_message(inst.queue, qid)[0] == "deferred"   # not due: untouched
    assert postqueue(inst, "-f") == (0, "", "")
    inst.wait_delivered("alice")
    inst.wait_queue_empty()


def test_flush_one_message_and_one_site(make_instance):
    inst = make_instance()
    a = deferred_fixture(inst, "alice@localhost", "by-id")
    b = deferred_fixture(inst, "bob@mx.test.example", "by-site")
    c = deferred_fixture(inst, "carol@localhost", "left-alone")
    assert postqueue(inst, "-i", a) == (0, "", "")
    inst.wait_delivered("alice")
    assert postqueue(inst, "-s", "MX.test.example") == (0, "", "")
    inst.wait_delivered("bob")
    wait_until(lambda: find_message(inst.queue, b)[0] is None, 10, what="b to leave the queue")
    assert find_message(inst.queue, a)[0] is None
    assert find_message(inst.queue, c)[0] == "deferred"
    assert inst.delivered("carol") == []


def test_flush_with_mail_system_down(fixture_queue):
    inst = fixture_queue()
    (inst.queue / "public").mkdir()
    rc, out, err = postqueue(inst, "-f")
    assert rc == 69 and out == ""
    assert "postqueue: fatal: Cannot flush mail queue - mail system is down" in err


def test_usage_errors(fixture_queue):
    inst = fixture_queue()
    for args in ((), ("-p", "-j"), ("-p", "extra"), ("-i", "../../etc/passwd")):
        rc, out, err = postqueue(inst, *args)
        assert rc != 0 and out == "" and "fatal" in err, args


# --- against Postfix 3.7 ------------------------------------------------------------


def test_json_fields_as_postfix(make_instance):
    """postqueue -j for a deferred message, field for field as the
    installed Postfix prints it for the same message: the same members in
    the same order with the same JSON types, recipients with address and
    delay_reason, and equal values where both MTAs mean the same (sizes
    and ids are each MTA's own)."""
    pf = started_postfix()
    try:
        inst = make_instance(extra_main=["relayhost = [127.0.0.1]:9"])
        rcpts = ["bob@remote.example", "carol@remote.example"]
        msg = simple_message("json fields")
        pf_id = pf.send(msg, rcpts, SENDER)
        theirs = pf.wait_deferred(pf_id)
        pe_id = inst.send(msg, rcpts=rcpts)

        def deferred():
            for o in map(json.loads, postqueue(inst, "-j")[1].splitlines()):
                if (o["queue_id"] == pe_id and o["queue_name"] == "deferred"
                        and all("delay_reason" in r for r in o["recipients"])):
                    return o
            return None
        ours = wait_until(deferred, 30, what="the message to be deferred")
    finally:
        print(pf.log_tail())
        pf.cleanup()
    assert list(ours) == list(theirs) == ["queue_name", "queue_id", "arrival_time", "message_size",
                                          "forced_expire", "sender", "recipients"]
    for key in theirs:
        assert type(ours[key]) is type(theirs[key]), key
    for mine, postfix in zip(ours["recipients"], theirs["recipients"]):
        assert list(mine) == list(postfix) == ["address", "delay_reason"]
        assert mine == postfix
    for key in ("queue_name", "forced_expire", "sender"):
        assert ours[key] == theirs[key], key
    assert abs(ours["arrival_time"] - theirs["arrival_time"]) < 60
    assert ours["recipients"][0]["delay_reason"] == \
        "connect to 127.0.0.1[127.0.0.1]:9: Connection refused"
