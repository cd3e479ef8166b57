"""Hostile SMTP servers against remote: malformed multi-line replies, a 1 MB
reply line, NUL bytes, a reply cut off by a close, a garbage greeting, a
5xx greeting, a reply of too many lines, escape sequences in a rejection, plain text
injected behind the STARTTLS reply, and a server that stops answering.

Each message is deferred (or, for the rejection, bounced) with a clean,
printable log line; one remote process lives through all of it; and mail to
a well-behaved server keeps flowing. transport_maps sends each test domain
to its own hostile server on 127.0.0.30.
"""

import re

import pytest

from postern_instance import Instance, free_port, simple_message
from smtp_peers import HostileServer, Receiver, free_port_on

HOST = "127.0.0.30"
PEER = f"{HOST}[{HOST}]"
GOOD_HOST = "127.0.0.31"


def malformed_multiline(c):
    c.greet_and_ehlo()
    c.expect("MAIL")
    c.send("250-Sender ok\r\n251 but another code\r\n")
    c.read_line(10)


def bad_separator(c):
    c.greet_and_ehlo()
    c.expect("MAIL")
    c.send("250-Sender ok\r\n250*what is this\r\n")
    c.read_line(10)


def megabyte_line(c):
    c.greet_and_ehlo()
    c.expect("MAIL")
    c.send("250 " + "x" * (1 << 20) + "\r\n")
    c.read_line(10)


def nul_bytes(c):
    c.greet_and_ehlo()
    c.expect("MAIL")
    c.send(b"250 2.1.0 Ok\x00\x01 sneaky\r\n")
    c.read_line(10)


def close_mid_reply(c):
    c.greet_and_ehlo()
    c.expect("MAIL")
    c.send("250-first line\r\n250 half a li")


def garbage_greeting(c):
    c.send("hello there, no code at all\r\n")
    c.read_line(10)


def greeting_554(c):
    c.send("554 5.7.1 No service for you\r\n")
    c.wait_close(10)


def too_many_lines(c):
    c.greet_and_ehlo()
    c.expect("MAIL")
    c.send("".join(f"250-line {i}\r\n" for i in range(300)) + "250 end\r\n")
    c.read_line(10)


def escape_sequences(c):
    c.greet_and_ehlo(extensions=())
    c.expect("MAIL")
    c.send("250 2.1.0 Ok\r\n")
    c.expect("RCPT")
    c.send("550 5.7.1 go\x1b[31maway\x07 now\r\n")
    c.expect("RSET")
    c.send("250 2.0.0 Ok\r\n")
    c.read_line(10)


def starttls_injection(c):
    c.greet_and_ehlo(extensions=("PIPELINING", "STARTTLS"))
    c.expect("STARTTLS")
    c.send("220 2.0.0 Ready to start TLS\r\n250 2.0.0 injected before the handshake\r\n")
    c.read_line(10)


def silent_after_mail(c):
    c.greet_and_ehlo()
    c.expect("MAIL")
    c.wait_close(20)   # say nothing until the client gives up


# domain -> (script, dsn, text of the status)
CASES = {
    "multi.test": (malformed_multiline, "4.5.0",
                   f"host {PEER} sent a malformed reply while sending MAIL FROM"),
    "sep.test": (bad_separator, "4.5.0",
                 f"host {PEER} sent a malformed reply while sending MAIL FROM"),
    "mega.test": (megabyte_line, "4.5.0",
                  f"host {PEER} sent an oversized reply while sending MAIL FROM"),
    "nul.test": (nul_bytes, "4.5.0",
                 f"host {PEER} sent a malformed reply while sending MAIL FROM"),
    "cut.test": (close_mid_reply, "4.4.2", f"lost connection with {PEER} while sending MAIL FROM"),
    "garbage.test": (garbage_greeting, "4.5.0",
                     f"host {PEER} sent a malformed reply while receiving the initial "
                     "server greeting"),
    # A 5xx greeting skips the server and defers, as Postfix's default
    # smtp_skip_5xx_greeting does; it never bounces.
    "reject.test": (greeting_554, "4.7.1",
                    f"host {PEER} refused to talk to me: 554 5.7.1 No service for you"),
    "lines.test": (too_many_lines, "4.5.0",
                   f"host {PEER} sent a malformed reply while sending MAIL FROM"),
    "escape.test": (escape_sequences, "5.7.1",
                    f"host {PEER} said: 550 5.7.1 go [31maway now (in reply to RCPT TO command)"),
    "inject.test": (starttls_injection, "4.5.0",
                    f"host {PEER} sent unexpected data after the STARTTLS reply"),
    "silent.test": (silent_after_mail, "4.4.2",
                    f"conversation with {PEER} timed out while sending MAIL FROM"),
}


@pytest.fixture(scope="module")
def setup():
    servers = {d: HostileServer(HOST, script).start() for d, (script, _, _) in CASES.items()}
    good = Receiver(GOOD_HOST, free_port_on(GOOD_HOST)).start()
    entries = [f"{d}=smtp:[{HOST}]:{s.port}" for d, s in servers.items()]
    entries.append(f"good.test=smtp:[{GOOD_HOST}]:{good.port}")
    inst = Instance(free_port(), extra_main=[
        "transport_maps = inline:{ " + ", ".join(entries) + " }",
        "smtp_mail_timeout = 2s",
        # Only the STARTTLS case is offered TLS; "may" goes on in clear elsewhere.
        "smtp_tls_security_level = may",
        "dns_servers = 127.0.0.1:9",
    ])
    try:
        inst.start()
        yield inst, servers, good
    finally:
        print(inst.log_tail(80))
        inst.cleanup()
        good.stop()
        for s in servers.values():
            s.stop()


def status_of(inst, qid, rcpt):
    rx = rf"^{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), .*dsn=(\S+), status=(\w+) \((.*)\)$"
    line = inst.wait_log(rx, program="smtp", timeout=30)[0]
    return line, re.match(rx, line.text).groups()


@pytest.mark.parametrize("domain", sorted(CASES))
def test_hostile_server_defers_cleanly(setup, domain):
    inst, servers, good = setup
    _, dsn, text = CASES[domain]
    rcpt = f"victim@{domain}"
    qid = inst.send(simple_message(f"hostile {domain}"), rcpts=[rcpt], sender="alice@localhost")
    line, (relay, got_dsn, status, got_text) = status_of(inst, qid, rcpt)
    assert (got_dsn, got_text) == (dsn, text)
    assert status == ("bounced" if dsn.startswith("5") else "deferred")
    assert servers[domain].connections >= 1
    assert all(32 <= ord(ch) < 127 for ch in line.raw), repr(line.raw)

    # Other mail keeps flowing, through the same remote process.
    before = len(good.messages)
    qid2 = inst.send(simple_message(f"after {domain}"), rcpts=["ok@good.test"])
    assert status_of(inst, qid2, "ok@good.test")[1][2] == "sent"
    good.wait_messages(before + 1)


def test_one_remote_process_survived_everything(setup):
    inst, _servers, _good = setup
    pids = {l.pid for l in inst.log_lines() if l.program.endswith("/smtp")}
    assert len(pids) == 1, pids
    assert inst.pids("remote") == list(pids)
    assert not inst.find_log(r"(fatal|panic|signal|terminated)", program="master")
    assert not inst.find_log(r"(fatal|panic)", program="smtp")
