"""Milters that misbehave, beside the real ones: down, slower than
milter_command_timeout or milter_content_timeout, answering garbage or an
oversize packet, closing in the middle of the body, garbage in the
negotiation. In each case milter_default_action applies exactly
(tempfail: 451 4.7.1 and nothing queued; accept: the message delivered
as sent; reject: 550 5.5.0; quarantine: hold/), with Postfix's warning,
while other sessions go on at full speed, no daemon dies, and no message
is lost (a local submission refused for now stays in maildrop/ and goes
out once the milter is back).
"""

import re
import threading
import time

import pytest

from milter_peers import (CONTINUE, FakeMilter, add_header, closed_port, packet, replace_body)
from postern_instance import (HELO, SENDER, Instance, free_port, split_message, wait_until)
from sendmail_helpers import maildrop_files, run_sendmail
from tables_fixture import queue_dir_files
from test_milter import Client, message, queued_id

TEMPFAIL_REPLY = (451, ["4.7.1 Service unavailable - try again later"])
CLOSED = FakeMilter.CloseNow


def healthy(ev):
    """What a working milter does: tags the message."""
    return add_header("X-Filtered", "yes") + CONTINUE if ev.stage == "eom" else None


@pytest.fixture(scope="module")
def milter():
    m = FakeMilter(healthy)
    yield m
    m.close()


@pytest.fixture(scope="module", params=["tempfail", "accept"])
def inst(request, milter):
    i = Instance(free_port(), extra_main=[f"smtpd_milters = {milter.spec}",
                                           f"milter_default_action = {request.param}",
                                           "milter_command_timeout = 2s",
                                           "milter_content_timeout = 2s"])
    i.action = request.param
    i.start()
    yield i
    print(i.log_tail(120))
    i.cleanup()


@pytest.fixture
def script(milter):
    def set_script(fn):
        milter.script = fn
    yield set_script
    milter.script = healthy


def garbage_at(stage, data):
    return lambda ev: data if ev.stage == stage else healthy(ev)


def slow_at(stage, seconds=4):
    def fn(ev):
        if ev.stage == stage:
            time.sleep(seconds)
        return healthy(ev)
    return fn


def close_at(stage):
    def fn(ev):
        if ev.stage == stage:
            raise CLOSED()
        return healthy(ev)
    return fn


def expect_default_action(inst, reply, rcpt, body):
    """tempfail: the 451; accept: queued and delivered as sent, untouched."""
    if inst.action == "tempfail":
        assert reply == TEMPFAIL_REPLY, reply
        time.sleep(0.3)
        assert not inst.queue_files() and not inst.delivered(rcpt.split("@")[0])
        return
    qid = queued_id(reply)
    data = inst.wait_delivered(rcpt.split("@")[0])[-1].read_bytes()
    headers, got = split_message(data)
    assert qid.encode() in data
    assert got == body.encode() and not any(h.startswith(b"X-Filtered") for h in headers)


HOSTILE = [
    # (name, script, the milter's warning)
    ("slow_rcpt", slow_at("rcpt"),
     r"can't read SMFIC_RCPT reply packet header: Connection timed out"),
    ("slow_eom", slow_at("eom"),
     r"can't read SMFIC_BODYEOB reply packet header: Connection timed out"),
    ("garbage_mail", garbage_at("mail", b"\x00\x00\x00\x05zzzzz"),
     r"unexpected filter response \(unknown filter reply\) after event SMFIC_MAIL"),
    ("http_at_helo", garbage_at("helo", b"HTTP/1.1 400 Bad Request\r\n\r\n"),
     r"unreasonable packet length: \d+ > 1048576"),
    ("oversize_eom", garbage_at("eom", b"\x7f\xff\xff\xffc"),
     r"unreasonable packet length: 2147483647 > 1048576"),
    ("short_reply", garbage_at("rcpt", packet("y", b"550 5.7.1 no terminator")),
     r"missing string null terminator in SMFIR_REPLYCODE reply"),
    ("close_mid_body", close_at("body"),
     r"(error writing command|can't read SMFIC_BODY reply packet header)"),
    ("close_at_data", close_at("data"),
     r"can't read SMFIC_DATA reply packet header: Unexpected EOF"),
]


@pytest.mark.parametrize("name,fn,warning", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_default_action_applies_exactly(inst, script, name, fn, warning):
    script(fn)
    rcpt = f"{name}-{inst.action}@localhost"
    body = "".join(f"line {i} of a body long enough to take several chunks\n"
                   for i in range(3000))
    c = Client(inst)
    assert c.ehlo[0] == 250
    reply = c.send_message(message(name, body=body), rcpts=(rcpt,))
    c.quit()
    inst.wait_log(rf"warning: milter inet:127\.0\.0\.1:\d+: {warning}")
    expect_default_action(inst, reply, rcpt, body)


def test_other_sessions_go_on_while_a_milter_stalls_one(inst, script):
    stalled = threading.Event()

    def fn(ev):
        if ev.stage == "rcpt" and "stall" in ev.data.decode():
            stalled.set()
            time.sleep(1.8)   # within the timeout: this session just waits
        return healthy(ev)

    script(fn)
    result = {}

    def slow_session():
        c = Client(inst)
        result["slow"] = c.send_message(message("slow"), rcpts=("stall@localhost",))
        c.quit()

    t = threading.Thread(target=slow_session)
    t.start()
    assert stalled.wait(10)
    started = time.monotonic()
    for i in range(5):
        c = Client(inst)
        queued_id(c.send_message(message(f"fast {i}"), rcpts=("fast@localhost",)))
        c.quit()
    fast = time.monotonic() - started
    t.join(20)
    assert fast < 1.5, f"five other sessions took {fast:.2f}s while one milter call stalled"
    queued_id(result["slow"])
    inst.wait_delivered("fast", 5)
    inst.wait_delivered("stall")


def test_no_daemon_died_and_mail_still_flows(inst, script):
    """Runs after the hostile ones of this instance."""
    smtpd = inst.pids("smtpd")
    c = Client(inst)
    queued_id(c.send_message(message("after"), rcpts=("after@localhost",)))
    c.quit()
    data = inst.wait_delivered("after")[-1].read_bytes()
    assert b"X-Filtered: yes" in data
    assert inst.pids("smtpd") == smtpd
    bad = inst.find_log(r"fatal|panic|terminated on signal|killed by signal|status [1-9]")
    assert not bad, bad


def test_replacement_body_beyond_message_size_limit(make_instance):
    chunk = b"z" * 65000

    def eom(ev):
        if ev.stage != "eom":
            return None
        return replace_body(chunk) * 4 + CONTINUE   # 260 KB for a 100 KB limit

    m = FakeMilter(eom)
    try:
        inst = make_instance(extra_main=[f"smtpd_milters = {m.spec}",
                                         "message_size_limit = 100000"])
        c = Client(inst)
        assert c.send_message(message()) == (552, ["5.3.4 Message file too big"])
        c.quit()
        inst.wait_log(r"warning: \w+: replacement body from milter exceeds message_size_limit")
        assert not inst.queue_files()
        # the connection was dropped (its answer half read); the next
        # session has a new one
        m.script = healthy
        c = Client(inst)
        queued_id(c.send_message(message()))
        c.quit()
        assert b"X-Filtered: yes" in inst.wait_delivered("alice")[-1].read_bytes()
    finally:
        m.close()


def test_garbage_in_the_negotiation(make_instance):
    m = FakeMilter(optneg_reply=b"\x00\x00\x00\x03Ozz")
    try:
        inst = make_instance(extra_main=[f"smtpd_milters = {m.spec}"])
        c = Client(inst)
        assert c.banner[0] == 220
        assert c.send_message(message()) == TEMPFAIL_REPLY
        c.quit()
        inst.wait_log(r"warning: milter inet:\S+: read error in initial handshake: input packet "
                      r"too short for network long")
    finally:
        m.close()


# --- a milter that is down ----------------------------------------------------------


@pytest.mark.parametrize("action,banner,want", [
    ("tempfail", 220, TEMPFAIL_REPLY),
    # a 5xx at CONNECT turns the banner into Postfix's 554
    ("reject", 554, (550, ["5.5.0 Service unavailable"])),
])
def test_milter_down_refuses_mail_as_configured(make_instance, action, banner, want):
    down = closed_port()
    inst = make_instance(extra_main=[f"smtpd_milters = {down}",
                                     f"milter_default_action = {action}"])
    c = Client(inst)
    assert c.banner[0] == banner and c.ehlo[0] == 250
    assert c.cmd(f"MAIL FROM:<{SENDER}>") == want
    c.quit()
    inst.wait_log(rf"warning: connect to Milter service {re.escape(down)}: Connection refused")
    text = re.escape(f"{want[0]} {want[1][0]}")
    inst.wait_log(rf"^NOQUEUE: milter-reject: CONNECT from unknown\[127\.0\.0\.1\]: {text}; "
                  r"proto=SMTP$")
    inst.wait_log(rf"^NOQUEUE: milter-reject: MAIL from unknown\[127\.0\.0\.1\]: {text}; "
                  rf"from=<{re.escape(SENDER)}> proto=ESMTP helo=<{re.escape(HELO)}>$")


def test_milter_down_accept_delivers(make_instance):
    inst = make_instance(extra_main=[f"smtpd_milters = {closed_port()}",
                                     "milter_default_action = accept"])
    c = Client(inst)
    queued_id(c.send_message(message("through")))
    c.quit()
    inst.wait_delivered("alice")


def test_milter_down_quarantine_holds(make_instance):
    inst = make_instance(extra_main=[f"smtpd_milters = {closed_port()}",
                                     "milter_default_action = quarantine"])
    c = Client(inst)
    qid = queued_id(c.send_message(message("held")))
    c.quit()
    wait_until(lambda: (inst.queue / "hold" / qid).exists(), 10, what="the file in hold/")
    inst.wait_log(r"^NOQUEUE: milter-hold: MAIL from unknown\[127\.0\.0\.1\]: milter triggers "
                  r"HOLD action")
    assert not inst.delivered("alice")


def test_local_submission_waits_in_maildrop_until_the_milter_is_back(make_instance):
    down = closed_port()
    inst = make_instance(extra_main=[f"non_smtpd_milters = {down}"])
    r = run_sendmail(inst, ["alice@localhost"], "Subject: first\n\nwaits\n")
    assert r.returncode == 0, r.stderr
    inst.wait_log(r"^\w+: milter-reject: CONNECT from localhost\[127\.0\.0\.1\]: 4\.7\.1 "
                  r"Service unavailable - try again later", program="cleanup")
    assert maildrop_files(inst) and not inst.delivered("alice")
    m = FakeMilter(healthy, port=int(down.rsplit(":", 1)[1]))
    try:
        # the next submission wakes pickup, which takes both
        r = run_sendmail(inst, ["alice@localhost"], "Subject: second\n\ngoes\n")
        assert r.returncode == 0, r.stderr
        files = inst.wait_delivered("alice", 2)
        assert all(b"X-Filtered: yes" in f.read_bytes() for f in files)
        wait_until(lambda: not maildrop_files(inst), 10, what="an empty maildrop/")
        assert not queue_dir_files(inst, "corrupt")
    finally:
        m.close()
