"""smtpd_milters and non_smtpd_milters against a milter written here on raw
sockets (milter_peers.FakeMilter), so every byte Postern sends is seen and
every reply can be scripted: each stage in Postfix's order with Postfix's
default macros (and the lists a milter asks for instead), the message as it
is queued (our own Received: hidden, body in CR LF lines), each reply at
each stage with Postfix's SMTP reply and log line, each modification landing
in the queue file before the 250, several milters in order, unix: sockets,
protocol versions and flags (SMFIP_NO*, NR_*, SKIP, HDR_LEADSPC),
milter_header_checks, and local submissions through sendmail.

Replies and log lines were compared with Postfix 3.7 (the installed one)
given the same scripted milter.
"""

import re
import subprocess
import time

import pytest

from milter_peers import (ACCEPT, CONTINUE, DISCARD, REJECT, SKIP, TEMPFAIL, FakeMilter,
                          SMFIP_HDR_LEADSPC, SMFIP_NOHDRS, SMFIP_NOHELO, SMFIP_NR_RCPT,
                          SMFIP_SKIP, add_header, add_rcpt, change_from, change_header,
                          closed_port, del_rcpt, insert_header, packet, quarantine, replace_body,
                          replycode, split_z)
from postern_instance import (BUILD, HELO, HOSTNAME, SENDER, QUEUED_RE, Instance, RawSMTP, crlf,
                              free_port, split_message, wait_until)
from queue_fixture import parse_records
from sendmail_helpers import run_sendmail
from smtpd_fixture import TLSRaw, make_cert, master_cf, tls_lines
from tables_fixture import queue_dir_files, regexp_table

CLIENT = r"unknown\[127\.0\.0\.1\]"
WHATSUP = rf"from=<sender@example\.org> to=<alice@localhost> proto=ESMTP helo=<{re.escape(HELO)}>"


def whatsup(rcpt):
    return rf"from=<sender@example\.org> to=<{re.escape(rcpt)}> proto=ESMTP helo=<{re.escape(HELO)}>"


def message(subject="test", extra=(), body="hello\nworld\n"):
    return "\n".join([f"From: {SENDER}", "To: alice@localhost", f"Subject: {subject}",
                      *extra]) + "\n\n" + body


class Client:
    """A raw SMTP session that remembers every reply."""

    def __init__(self, inst, helo=HELO):
        self.c = RawSMTP(inst.port, timeout=30)
        self.banner = self.c.read_reply()
        self.ehlo = self.c.cmd(f"EHLO {helo}") if self.banner[0] != 421 else None

    def cmd(self, line):
        return self.c.cmd(line)

    def send_message(self, msg, rcpts=("alice@localhost",), sender=SENDER):
        """MAIL, RCPTs, DATA and the message; the last reply (the first one
        that refused, when one did)."""
        r = self.cmd(f"MAIL FROM:<{sender}>")
        if r[0] != 250:
            return r
        ok = 0
        for rcpt in rcpts:
            r = self.cmd(f"RCPT TO:<{rcpt}>")
            ok += r[0] == 250
        if not ok:
            return r
        r = self.cmd("DATA")
        if r[0] != 354:
            return r
        self.c.send(crlf(msg) + b".\r\n")
        return self.c.read_reply()

    def quit(self):
        try:
            self.cmd("QUIT")
        except (OSError, ConnectionError, AssertionError):
            pass
        self.c.close()


def queued_id(reply):
    m = QUEUED_RE.match(reply[1][0])
    assert reply[0] == 250 and m, reply
    return m["id"]


# --- one instance and one scripted milter for most tests ------------------------


@pytest.fixture(scope="module")
def milter():
    m = FakeMilter()
    yield m
    m.close()


@pytest.fixture(scope="module")
def inst(milter):
    i = Instance(free_port(), extra_main=[f"smtpd_milters = {milter.spec}",
                                           "milter_command_timeout = 5s",
                                           "milter_content_timeout = 5s"])
    i.start()
    yield i
    print(i.log_tail(120))
    i.cleanup()


@pytest.fixture
def script(milter):
    """Set the milter's script for one test; the events it gets from then
    on are script.events()."""
    class Script:
        def __init__(self):
            self.start = len(milter.events)

        def __call__(self, fn):
            milter.script = fn

        def events(self):
            return milter.since(self.start)

        def stages(self, conn=None):
            return [e.stage for e in self.events() if conn is None or e.conn == conn]

        def of(self, stage):
            return [e for e in self.events() if e.stage == stage]

    s = Script()
    yield s
    milter.script = lambda ev: None


def at(stage, reply):
    """A script answering reply at stage, continue elsewhere."""
    return lambda ev: reply if ev.stage == stage else None


# --- what the milter sees -------------------------------------------------------------


def test_every_stage_reaches_the_milter_with_postfix_macros(inst, script):
    c = Client(inst)
    msg = message("macros", extra=["X-Fold: first", "\tsecond"], body="line one\n\nline three\n")
    c.cmd(f"MAIL FROM:<{SENDER}> SIZE=100")
    c.cmd("RCPT TO:<alice@localhost> NOTIFY=NEVER")
    c.cmd("RCPT TO:<bob@localhost>")
    c.cmd("DATA")
    c.c.send(crlf(msg) + b".\r\n")
    qid = queued_id(c.c.read_reply())
    assert c.cmd("FOO bar")[0] == 500
    c.quit()
    # This session's milter connection only: the instance's start-up port
    # probe is a session too, and its connect/quit may come at any time.
    conn = script.of("helo")[0].conn
    wait_until(lambda: "quit" in script.stages(conn), 10, what="the milter's QUIT")
    stages = script.stages(conn)
    n_headers = stages.count("header")
    assert stages == (["connect", "helo", "mail", "rcpt", "rcpt", "data"] + ["header"] * n_headers
                      + ["eoh", "body", "eom", "abort", "unknown", "quit"]), stages
    connect = [e for e in script.of("connect") if e.conn == conn][0]
    name, rest = connect.data.split(b"\0", 1)
    # a client without a name is "[addr]" here, Sendmail's form, as Postfix sends it
    assert name == b"[127.0.0.1]" and rest[:1] == b"4" and rest[3:] == b"127.0.0.1\0"
    m = connect.macros
    assert m["j"] == HOSTNAME and m["{daemon_name}"] == HOSTNAME
    assert m["{daemon_addr}"] == "127.0.0.1" and m["_"] == "unknown [127.0.0.1]"
    assert re.fullmatch(r"Postern \S+", m["v"]), m
    assert set(m) == {"j", "{daemon_name}", "{daemon_addr}", "v", "_"}   # milter_connect_macros
    assert script.of("helo")[0].args() == [HELO]
    mail = script.of("mail")[0]
    assert mail.args() == [f"<{SENDER}>", "SIZE=100"]
    assert mail.macros == {"{mail_addr}": SENDER, "{mail_host}": "example.org",
                           "{mail_mailer}": "smtp"}   # no i yet, no AUTH
    rcpt1, rcpt2 = script.of("rcpt")
    assert rcpt1.args() == ["<alice@localhost>", "NOTIFY=NEVER"]
    assert rcpt1.macros == {"{rcpt_addr}": "alice@localhost", "{rcpt_host}": "localhost",
                            "{rcpt_mailer}": "local"}
    assert rcpt2.macros["i"] == qid   # the queue file exists by the second RCPT
    for stage in ("data", "eoh", "eom"):
        assert script.of(stage)[0].macros == {"i": qid}, stage
    headers = [tuple(e.args()) for e in script.of("header")]
    # As queued: our own Received: hidden, cleanup's Message-ID and Date
    # shown, one space after the colon eaten, folding kept.
    assert headers[:4] == [("From", SENDER), ("To", "alice@localhost"), ("Subject", "macros"),
                           ("X-Fold", "first\n\tsecond")]
    assert [h[0] for h in headers[4:]] == ["Message-ID", "Date"]
    assert not any(h[0] == "Received" for h in headers)
    assert script.of("body")[0].data == b"line one\r\n\r\nline three\r\n"
    assert script.of("unknown")[0].args() == ["FOO bar"]


def test_pipelined_commands_wait_for_the_milter_in_order(inst, script):
    def slow_second_rcpt(ev):
        if ev.stage == "rcpt" and b"pipe2" in ev.data:
            time.sleep(0.3)
            return REJECT
        return None

    script(slow_second_rcpt)
    c = Client(inst)
    c.c.send(crlf(f"MAIL FROM:<{SENDER}>\nRCPT TO:<pipe1@localhost>\nRCPT TO:<pipe2@localhost>\n"
                  "RCPT TO:<pipe3@localhost>\nDATA\n"))
    replies = [c.c.read_reply() for _ in range(5)]
    assert [r[0] for r in replies] == [250, 250, 550, 250, 354], replies
    c.c.send(crlf(message("pipelined")) + b".\r\n")
    qid = queued_id(c.c.read_reply())
    c.quit()
    for user in ("pipe1", "pipe3"):
        assert qid.encode() in inst.wait_delivered(user)[-1].read_bytes()
    assert not inst.delivered("pipe2")


def test_symbol_lists_a_milter_asks_for_replace_the_configured_ones(make_instance):
    m = FakeMilter(symlists={"connect": "{client_addr} {client_name} {client_port} "
                             "{client_ptr} {client_resolve}",
                             "helo": "{tls_version} {cipher}",
                             "mail": "i {auth_type} {mail_addr}",
                             "rcpt": "{rcpt_addr}", "eoh": "{client_addr} j",
                             "eom": "i {mail_addr} {rcpt_addr}"})
    try:
        inst = make_instance(extra_main=[f"smtpd_milters = {m.spec}"])
        c = Client(inst)
        qid = queued_id(c.send_message(message()))
        c.quit()
        wait_until(lambda: m.of("quit"), 10, what="the milter's QUIT")
        con = m.macros_at("connect")
        assert con["{client_addr}"] == "127.0.0.1" and con["{client_name}"] == "unknown"
        # the tests' DNS is a closed port: the name lookup failed for now
        assert con["{client_ptr}"] == "unknown" and con["{client_resolve}"] == "TEMP"
        assert int(con["{client_port}"]) > 0 and "j" not in con
        assert m.macros_at("helo") == {}   # no TLS
        assert m.macros_at("mail") == {"{mail_addr}": SENDER}
        assert m.macros_at("eoh") == {"{client_addr}": "127.0.0.1", "j": HOSTNAME}
        assert m.macros_at("eom") == {"i": qid, "{mail_addr}": SENDER,
                                      "{rcpt_addr}": "alice@localhost"}
    finally:
        m.close()


# --- replies before the message --------------------------------------------------------


def test_connect_reject_refuses_the_banner_and_every_transaction(inst, script):
    script(at("connect", REJECT))
    c = Client(inst)
    assert c.banner == (554, [f"{HOSTNAME} ESMTP not accepting connections"])
    assert c.cmd(f"EHLO {HELO}")[0] == 250
    assert c.cmd(f"MAIL FROM:<{SENDER}>") == (550, ["5.7.1 Command rejected"])
    c.quit()
    inst.wait_log(rf"^NOQUEUE: milter-reject: CONNECT from {CLIENT}: 550 5\.7\.1 Command "
                  r"rejected; proto=SMTP$", program="smtpd")
    inst.wait_log(rf"^NOQUEUE: milter-reject: MAIL from {CLIENT}: 550 5\.7\.1 Command rejected; "
                  rf"from=<{re.escape(SENDER)}> proto=ESMTP helo=<{re.escape(HELO)}>$")


def test_connect_tempfail_greets_then_refuses_mail_with_451(inst, script):
    script(at("connect", TEMPFAIL))
    c = Client(inst)
    assert c.banner[0] == 220 and c.ehlo[0] == 250
    assert c.cmd(f"MAIL FROM:<{SENDER}>") == (451, ["4.7.1 Service unavailable - try again later"])
    c.quit()
    inst.wait_log(rf"milter-reject: EHLO from {CLIENT}: 451 4\.7\.1 Service unavailable - try "
                  rf"again later; proto=ESMTP helo=<{re.escape(HELO)}>$")


@pytest.mark.parametrize("stage,reply,command,want", [
    ("helo", REJECT, "MAIL", (550, ["5.7.1 Command rejected"])),
    ("mail", replycode("551 5.7.1 not you"), "MAIL", (551, ["5.7.1 not you"])),
    ("rcpt", REJECT, "RCPT", (550, ["5.7.1 Command rejected"])),
    ("rcpt", TEMPFAIL, "RCPT", (451, ["4.7.1 Service unavailable - try again later"])),
    ("rcpt", replycode("550-5.7.1 two%%\r\n550 5.7.1 lines"), "RCPT",
     (550, ["5.7.1 two%", "5.7.1 lines"])),
    ("data", TEMPFAIL, "DATA", (451, ["4.7.1 Service unavailable - try again later"])),
])
def test_replies_before_the_message(inst, script, stage, reply, command, want):
    script(at(stage, reply))
    c = Client(inst)
    assert c.ehlo[0] == 250   # a HELO rejection is only logged, as in Postfix
    got = c.send_message(message())
    c.quit()
    assert got == want
    logged = "EHLO" if stage == "helo" else command
    if stage == "helo":
        inst.wait_log(rf"milter-reject: EHLO from {CLIENT}: 550 5\.7\.1 Command rejected; "
                      rf"proto=ESMTP helo=<{re.escape(HELO)}>$")
        logged = "MAIL"
    # a multi-line reply is logged whole, its CR LF shown as "??"
    text = re.escape("??".join(f"{want[0]}{'-' if i + 1 < len(want[1]) else ' '}{t}"
                               for i, t in enumerate(want[1])))
    line = inst.wait_log(rf"milter-reject: {logged} from {CLIENT}: {text}", program="smtpd")[-1]
    # NOQUEUE until the queue file exists (DATA has its id)
    assert line.text.startswith("NOQUEUE: ") == (command != "DATA"), line
    if command in ("RCPT", "DATA"):
        assert re.search(rf"; {WHATSUP}$", line.text), line
    assert not inst.queue_files()


def test_unknown_command_gets_the_milters_reply(inst, script):
    script(at("unknown", replycode("550 5.5.1 go away")))
    c = Client(inst)
    assert c.cmd("XYZZY plugh") == (550, ["5.5.1 go away"])
    c.quit()
    assert script.of("unknown")[0].args() == ["XYZZY plugh"]
    inst.wait_log(rf"^NOQUEUE: milter-reject: UNKNOWN from {CLIENT}: 550 5\.5\.1 go away; "
                  rf"proto=ESMTP helo=<{re.escape(HELO)}>$")


def test_discard_at_rcpt_drops_the_message_after_250(inst, script):
    script(at("rcpt", DISCARD))
    c = Client(inst)
    qid = queued_id(c.send_message(message("discard me"), rcpts=("discard1@localhost",)))
    c.quit()
    inst.wait_log(rf"^NOQUEUE: milter-discard: RCPT from {CLIENT}: milter triggers DISCARD "
                  rf"action; {whatsup('discard1@localhost')}$")
    assert "data" not in script.stages()   # nothing more for this message
    time.sleep(0.5)
    assert not inst.find_log(rf"^{qid}: from=", program="qmgr")
    assert not inst.queue_files() and not inst.delivered("discard1")


# --- replies at the end of the message ------------------------------------------------------


@pytest.mark.parametrize("reply,want,logged", [
    (REJECT, (550, ["5.7.1 Command rejected"]), "5.7.1 Command rejected"),
    (TEMPFAIL, (451, ["4.7.1 Service unavailable - try again later"]),
     "4.7.1 Service unavailable - try again later"),
    (replycode("554-5.7.1 first line\r\n554 5.7.1 second line"),
     (554, ["5.7.1 first line", "5.7.1 second line"]),
     "5.7.1 first line??554 5.7.1 second line"),
    (replycode("553 5.7.0 50%% off"), (553, ["5.7.0 50% off"]), "5.7.0 50% off"),
])
def test_rejections_at_end_of_message_queue_nothing(inst, script, reply, want, logged):
    script(at("eom", reply))
    c = Client(inst)
    got = c.send_message(message("reject me"))
    c.quit()
    assert got == want
    inst.wait_log(rf"^\w+: milter-reject: END-OF-MESSAGE from {CLIENT}: {re.escape(logged)}; "
                  rf"{WHATSUP}$", program="cleanup")
    assert not inst.queue_files() and not queue_dir_files(inst, "hold")


def test_discard_at_end_of_message(inst, script):
    script(at("eom", DISCARD))
    c = Client(inst)
    qid = queued_id(c.send_message(message("discard"), rcpts=("discard2@localhost",)))
    c.quit()
    inst.wait_log(rf"^{qid}: milter-discard: END-OF-MESSAGE from {CLIENT}: milter triggers "
                  rf"DISCARD action; {whatsup('discard2@localhost')}$", program="cleanup")
    time.sleep(0.5)
    assert not inst.queue_files() and not inst.find_log(rf"^{qid}: from=")
    assert not inst.delivered("discard2")


def test_quarantine_holds_the_message_with_its_reason(inst, script):
    script(at("eom", quarantine("looks like a virus") + CONTINUE))
    c = Client(inst)
    qid = queued_id(c.send_message(message("hold me")))
    c.quit()
    inst.wait_log(rf"^{qid}: milter-hold: END-OF-MESSAGE from {CLIENT}: looks like a virus; "
                  rf"{WHATSUP}$", program="cleanup")
    held = inst.queue / "hold" / qid
    assert held.exists()
    records = parse_records(held.read_bytes())
    assert ("A", b"hold_reason=looks like a virus") in [(t, p) for t, p, _ in records]
    assert not inst.find_log(rf"^{qid}: from=", program="qmgr")
    # postqueue -p marks a held message with "!"
    out = subprocess.run([str(BUILD / "bin" / "postqueue"), "-c", str(inst.etc), "-p"],
                         capture_output=True, text=True, timeout=30).stdout
    assert re.search(rf"^{qid}!\s", out, re.M), out


def test_shutdown_answers_421_and_closes(inst, script):
    script(at("eom", packet("4")))
    c = Client(inst)
    assert c.send_message(message()) == (421, ["4.7.0 Server closing connection"])
    with pytest.raises((ConnectionError, OSError)):
        c.cmd("NOOP")
    c.c.close()
    assert not inst.queue_files()


# --- modifications ----------------------------------------------------------------------


def test_every_modification_lands_in_the_queue_file_before_the_250(inst, script):
    # Inserts count our own Received: (0 is before it, 1 after it), and
    # each one sees the ones before it.
    edits = (add_header("X-Added", "appended")
             + insert_header(1, "X-Second", "after our Received")
             + insert_header(0, "X-Top", "before our Received")
             + change_header(1, "Subject", "changed")
             + change_header(1, "X-Delete-Me", "")
             + change_header(2, "X-Multi", "second changed")
             + change_header(1, "X-New", "a change of none adds it")
             + change_header(1, "X-Same", "same")
             + add_rcpt("<bob@localhost>", "NOTIFY=NEVER")
             + add_rcpt("carol@localhost")
             + del_rcpt("<alice@localhost>")
             + change_from("<new-sender@example.net>", "RET=HDRS")
             + replace_body(b"new body\r\nline two\r\n") + replace_body(b"line three\r\n")
             + quarantine("kept for the test") + ACCEPT)
    script(at("eom", edits))
    c = Client(inst)
    msg = message("edit me", extra=["X-Delete-Me: gone", "X-Multi: one", "X-Multi: two",
                                     "X-Same: same"])
    qid = queued_id(c.send_message(msg, rcpts=("alice@localhost", "dave@localhost")))
    c.quit()
    # The quarantine keeps the file in hold/ to be read.
    records = parse_records((inst.queue / "hold" / qid).read_bytes())
    kinds = [(t, p.decode("utf-8", "replace")) for t, p, _ in records]
    assert ("S", "new-sender@example.net") in kinds
    rcpts = [p for t, p in kinds if t == "R"]
    assert sorted(rcpts) == ["bob@localhost", "carol@localhost", "dave@localhost"]
    bob = [i for i, k in enumerate(kinds) if k == ("R", "bob@localhost")][0]
    assert kinds[bob - 1] == ("N", "1")   # NOTIFY=NEVER
    assert ("A", "dsn_ret=HDRS") in kinds
    content = "".join(p for t, p in kinds if t == "C").encode()
    headers, body = split_message(content)
    names = [h.split(b":", 1)[0].decode() for h in headers]
    assert names[:3] == ["X-Top", "Received", "X-Second"]
    assert b"Subject: changed" in headers
    assert b"X-Multi: one" in headers and b"X-Multi: second changed" in headers
    assert not any(h.startswith(b"X-Delete-Me") for h in headers)
    assert names.count("X-Same") == 1   # changed to what it was: still one
    assert names[-2:] == ["X-Added", "X-New"]
    assert body == b"new body\nline two\nline three\n"


def test_deleting_every_recipient_queues_nothing_after_250(inst, script):
    script(at("eom", del_rcpt("<gone1@localhost>") + del_rcpt("gone2@localhost") + CONTINUE))
    c = Client(inst)
    qid = queued_id(c.send_message(message("nobody left"),
                                   rcpts=("gone1@localhost", "gone2@localhost")))
    c.quit()
    inst.wait_log(rf"^{qid}: milter-discard: END-OF-MESSAGE from {CLIENT}: milters deleted every "
                  r"recipient;", program="cleanup")
    time.sleep(0.3)
    assert not inst.queue_files() and not queue_dir_files(inst, "corrupt")
    assert not inst.delivered("gone1") and not inst.delivered("gone2")


def test_large_body_is_streamed_to_the_milter_and_replaced_in_chunks(inst, script):
    chunk = b"r" * 1000 + b"\r\n"
    replacement = chunk * 2000   # 2 MB in 32 packets

    def eom(ev):
        if ev.stage != "eom":
            return None
        return b"".join(replace_body(replacement[i:i + 65535])
                        for i in range(0, len(replacement), 65535)) + CONTINUE

    script(eom)
    c = Client(inst)
    big = "x" * 998 + "\n"
    qid = queued_id(c.send_message(message("big", body=big * 3000), rcpts=("big@localhost",)))
    c.quit()
    bodies = script.of("body")
    assert len(bodies) > 40 and all(len(b.data) <= 65535 for b in bodies)
    assert b"".join(b.data for b in bodies) == (big * 3000).replace("\n", "\r\n").encode()
    data = inst.wait_delivered("big")[-1].read_bytes()
    assert qid.encode() in data
    assert split_message(data)[1] == replacement.replace(b"\r\n", b"\n")


def test_several_milters_in_order_each_sees_the_changes_before_it(make_instance):
    first = FakeMilter(at("eom", add_header("X-First", "1") + CONTINUE))
    second = FakeMilter(at("eom", add_header("X-Second", "2") + CONTINUE))
    try:
        inst = make_instance(extra_main=[f"smtpd_milters = {first.spec}, {second.spec}"])
        c = Client(inst)
        queued_id(c.send_message(message("two milters")))
        c.quit()
        data = inst.wait_delivered("alice")[-1].read_bytes()
        assert b"X-First: 1\nX-Second: 2\n" in data
        # Headers each milter saw: the second one the first one's.
        assert ["X-First", "1"] in [e.args() for e in second.of("header")]
        # A rejection by the first is the answer; the second never hears.
        first.script = at("rcpt", REJECT)
        n = len(second.of("rcpt"))
        c = Client(inst)
        assert c.send_message(message()) == (550, ["5.7.1 Command rejected"])
        c.quit()
        assert len(second.of("rcpt")) == n
    finally:
        first.close()
        second.close()


# --- transports, versions, flags -------------------------------------------------------------


def test_wrapper_mode_milters_see_the_connection_after_the_handshake(make_instance):
    m = FakeMilter(at("eom", add_header("X-Wrapped", "yes") + CONTINUE))
    try:
        inst = make_instance(start=False)
        wrapped = free_port()
        cert, key = make_cert(inst.root)
        inst.write_master_cf(master_cf(inst.port, wrapper_port=wrapped))
        inst.write_main_cf(tls_lines(cert, key) + [f"smtpd_milters = {m.spec}"])
        inst.start()
        c = TLSRaw(wrapped, wrapped=True)
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(crlf(message("wrapped")) + b".\r\n")
        queued_id(c.read_reply())
        c.cmd("QUIT")
        c.close()
        assert b"X-Wrapped: yes" in inst.wait_delivered("alice")[-1].read_bytes()
        # The session's own milter connection (the instance's start-up
        # port probe is a session too, with a connect and a quit).
        conn = [e for e in m.events if e.stage == "helo"][0].conn
        assert m.stages(conn)[:2] == ["connect", "helo"]
    finally:
        m.close()


def test_unix_socket_milter(make_instance):
    inst = make_instance(start=False)
    m = FakeMilter(at("eom", add_header("X-Via", "unix socket") + CONTINUE),
                   unix_path=inst.root / "milter.sock")
    try:
        inst.append_main_cf(f"smtpd_milters = {m.spec}")
        inst.start()
        c = Client(inst)
        queued_id(c.send_message(message()))
        c.quit()
        assert b"X-Via: unix socket" in inst.wait_delivered("alice")[-1].read_bytes()
    finally:
        m.close()


def test_protocol_2_sends_only_version_2_events(make_instance):
    m = FakeMilter(version=2, actions=0x3f)
    try:
        inst = make_instance(extra_main=[f"smtpd_milters = {m.spec}", "milter_protocol = 2"])
        c = Client(inst)
        queued_id(c.send_message(message()))
        assert c.cmd("FOO")[0] == 500
        c.quit()
        wait_until(lambda: m.of("quit"), 10, what="QUIT")
        assert m.offered[-1] == (2, 0x1ff, 0x7f)   # every action offered, as Postfix
        stages = m.stages()
        assert "data" not in stages and "unknown" not in stages
        assert "eom" in stages
    finally:
        m.close()


def test_events_a_milter_declines_and_replies_it_does_not_send(make_instance):
    m = FakeMilter(protocol=SMFIP_NOHELO | SMFIP_NOHDRS | SMFIP_NR_RCPT)
    try:
        inst = make_instance(extra_main=[f"smtpd_milters = {m.spec}"])
        c = Client(inst)
        queued_id(c.send_message(message(), rcpts=("alice@localhost", "bob@localhost")))
        c.quit()
        inst.wait_delivered("bob")
        stages = m.stages()
        assert "helo" not in stages and "header" not in stages
        assert stages.count("rcpt") == 2 and "eoh" in stages
    finally:
        m.close()


def test_skip_stops_the_body_and_the_message_goes_on(make_instance):
    m = FakeMilter(at("body", SKIP), protocol=SMFIP_SKIP)
    try:
        inst = make_instance(extra_main=[f"smtpd_milters = {m.spec}"])
        c = Client(inst)
        queued_id(c.send_message(message(body=("y" * 500 + "\n") * 1000)))
        c.quit()
        inst.wait_delivered("alice")
        assert len(m.of("body")) == 1 and len(m.of("eom")) == 1
    finally:
        m.close()


def test_header_leading_space_when_the_milter_asks(make_instance):
    m = FakeMilter(at("eom", add_header("X-Lead", "  two spaces") + CONTINUE),
                   protocol=SMFIP_HDR_LEADSPC)
    try:
        inst = make_instance(extra_main=[f"smtpd_milters = {m.spec}"])
        c = Client(inst)
        queued_id(c.send_message(message("spaced")))
        c.quit()
        assert ["Subject", " spaced"] in [e.args() for e in m.of("header")]
        assert b"\nX-Lead:  two spaces\n" in inst.wait_delivered("alice")[-1].read_bytes()
    finally:
        m.close()


def test_milter_header_checks_inspect_the_headers_milters_add(make_instance):
    m = FakeMilter(at("eom", add_header("X-Verdict", "spam") + CONTINUE))
    try:
        inst = make_instance(start=False)
        inst.append_main_cf(f"smtpd_milters = {m.spec}",
                            "milter_header_checks = " + regexp_table(
                                inst, "milter_header_checks",
                                ["/^X-Verdict: spam/ REJECT milter says spam"]))
        inst.start()
        c = Client(inst)
        assert c.send_message(message()) == (550, ["5.7.1 milter says spam"])
        c.quit()
        inst.wait_log(rf"^\w+: reject: header X-Verdict: spam from {CLIENT}; "
                      r"from=<sender@example\.org> to=<alice@localhost> proto=ESMTP "
                      rf"helo=<{re.escape(HELO)}>: 5\.7\.1 milter says spam$")
        assert not inst.queue_files()
    finally:
        m.close()


def test_per_milter_settings(make_instance):
    m = FakeMilter(at("eom", add_header("X-Up", "yes") + CONTINUE))
    try:
        down = closed_port()
        inst = make_instance(extra_main=[
            f"smtpd_milters = {{ {down}, default_action=accept, connect_timeout=2s }}, "
            f"{m.spec}"])
        c = Client(inst)
        queued_id(c.send_message(message()))
        c.quit()
        assert b"X-Up: yes" in inst.wait_delivered("alice")[-1].read_bytes()
        inst.wait_log(rf"warning: connect to Milter service {re.escape(down)}: "
                      r"Connection refused")
    finally:
        m.close()


# --- local submissions (non_smtpd_milters) ----------------------------------------------------


def test_sendmail_mail_goes_through_non_smtpd_milters(make_instance):
    m = FakeMilter(at("eom", add_header("X-Local", "filtered") + CONTINUE))
    try:
        inst = make_instance(extra_main=[f"non_smtpd_milters = {m.spec}"])
        r = run_sendmail(inst, ["-f", "user@example.org", "alice@localhost", "bob@localhost"],
                         "Subject: local\n\nfrom the command line\n")
        assert r.returncode == 0, r.stderr
        data = inst.wait_delivered("alice")[-1].read_bytes()
        assert b"X-Local: filtered" in data
        wait_until(lambda: m.of("quit"), 10, what="QUIT")
        stages = m.stages()
        assert stages[:5] == ["connect", "helo", "mail", "rcpt", "rcpt"], stages
        assert stages[5] == "data" and stages[-2:] == ["eom", "quit"]
        assert m.of("connect")[0].data.startswith(b"localhost\x004")
        assert m.of("helo")[0].args() == ["localhost"]
        # without angle brackets, as Postfix sends them for local mail
        assert m.of("mail")[0].args() == ["user@example.org"]
        assert [e.args() for e in m.of("rcpt")] == [["alice@localhost"], ["bob@localhost"]]
        assert m.macros_at("mail")["{mail_addr}"] == "user@example.org"
        assert m.macros_at("eom")["i"] == re.search(rb"\sid (\w+);", data)[1].decode()
        # pickup's Received: is ours and hidden; the milter sees the rest
        assert "Received" not in [e.args()[0] for e in m.of("header")]
        # smtpd mail does not go through non_smtpd_milters
        n = len(m.events)
        c = Client(inst)
        queued_id(c.send_message(message()))
        c.quit()
        inst.wait_delivered("alice", 2)
        assert len(m.events) == n
    finally:
        m.close()


def test_local_submission_refused_or_deferred_by_a_milter(make_instance):
    m = FakeMilter(at("eom", REJECT))
    try:
        inst = make_instance(extra_main=[f"non_smtpd_milters = {m.spec}"])
        r = run_sendmail(inst, ["alice@localhost"], "Subject: refused\n\nx\n")
        assert r.returncode == 0
        inst.wait_log(r"^\w+: milter-reject: END-OF-MESSAGE from localhost\[127\.0\.0\.1\]: "
                      r"5\.7\.1 Command rejected; from=<\S+> to=<alice@localhost>",
                      program="cleanup")
        # pickup moves a refused file aside, never drops it
        wait_until(lambda: queue_dir_files(inst, "corrupt"), 10, what="the file in corrupt/")
        # a milter may not refuse a recipient of a local submission: the
        # mail stays queued (Postfix's configuration error)
        m.script = at("rcpt", REJECT)
        r = run_sendmail(inst, ["alice@localhost"], "Subject: stays\n\nx\n")
        inst.wait_log(r"warning: \w+: milter configuration error: can't reject recipient in "
                      r"non-smtpd\(8\) submission", program="cleanup")
        assert [p for p in (inst.queue / "maildrop").iterdir()]
    finally:
        m.close()
