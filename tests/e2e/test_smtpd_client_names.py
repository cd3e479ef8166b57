"""The client's names (issue 15), against the test's dnsmasq: the PTR name
of the client address that resolves back to it is client_name, shown in
`connect from NAME[ADDR]`, `ID: client=NAME[ADDR]` and the Received:
header `from HELO (NAME [ADDR])`; otherwise the client is `unknown`, with
Postfix's warnings. reject_unknown_client_hostname and
reject_unknown_reverse_client_hostname answer with Postfix's codes
(unknown_client_reject_code for a name that is missing or does not
resolve back, 450 whatever it says for a temporary failure). The shapes
of replies, log lines and headers here are those the installed Postfix
3.7 gives for the same DNS answers. A name server that does not answer
delays only that client's greeting, by at most
smtpd_peername_lookup_timeout."""

import re
import socket
import time

import pytest

from dnsmasq_fixture import DnsServer, SilentServer
from postern_instance import HELO, SENDER, RawSMTP, crlf, simple_message, wait_until

# client address -> what Postfix makes of it (with the records below)
CONFIRMED = "127.0.0.2"       # PTR confirmed.test, which has A 127.0.0.2
REVERSE_ONLY = "127.0.0.3"    # PTR reverse-only.test, a name that does not exist
NO_PTR = "127.0.0.4"          # no PTR record: NXDOMAIN
ELSEWHERE = "127.0.0.5"       # PTR elsewhere.test, whose A is another address
PTR_SERVFAIL = "127.0.0.6"    # the PTR lookup fails (SERVFAIL)
FORWARD_SERVFAIL = "127.0.0.7"   # PTR flaky.test, whose A lookup fails
NUMERIC = "127.0.0.8"         # PTR 1.2.3.4: an address posing as a name
SILENT = "127.0.0.9"          # the name server for its PTR never answers


@pytest.fixture
def dns():
    server = DnsServer(
        hosts=[("confirmed.test", CONFIRMED), ("elsewhere.test", "127.0.0.99"),
               ("six.test", "::1")],
        ptrs=[(REVERSE_ONLY, "reverse-only.test"), (ELSEWHERE, "elsewhere.test"),
              (FORWARD_SERVFAIL, "flaky.test"), (NUMERIC, "1.2.3.4")],
        servfail=["6.0.0.127.in-addr.arpa", "flaky.test"],
        silent=["9.0.0.127.in-addr.arpa"])
    server.start()
    yield server
    server.close()


def free_port6():
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def names_instance(make_instance, dns, *extra, ipv6_port=None):
    inst = make_instance(extra_main=[f"dns_servers = {dns.servers}",
                                     "smtpd_peername_lookup_timeout = 2s", *extra], start=False)
    if ipv6_port:
        inst.write_master_cf(
            f"127.0.0.1:{inst.port} inet n - n - - smtpd\n"
            f"[::1]:{ipv6_port} inet n - n - - smtpd\n"
            "cleanup unix - - n - 0 cleanup\nqmgr fifo n - n 300 1 qmgr\n"
            "local unix - n n - - local\nbounce unix - - n - 0 bounce\n")
    inst.start()
    return inst


def connect(inst, source=None, host="127.0.0.1", port=None):
    """An open session past the greeting; (client, seconds the greeting took)."""
    t = time.monotonic()
    c = RawSMTP(port or inst.port, host=host, source=(source, 0) if source else None)
    code, _ = c.read_reply()
    assert code == 220
    return c, time.monotonic() - t


def send_message(c, subject, helo=HELO):
    """One message in the open session; returns the queue id."""
    if helo:
        assert c.cmd(f"EHLO {helo}")[0] == 250
    assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
    assert c.cmd("RCPT TO:<alice@localhost>") == (250, ["2.1.5 Ok"])
    assert c.cmd("DATA")[0] == 354
    c.send(crlf(simple_message(subject=subject)) + b".\r\n")
    code, text = c.read_reply()
    assert code == 250, text
    return text[0].rsplit(" ", 1)[1]


def received_of(inst, subject):
    """The first (our) Received: header of the delivered message, unfolded."""
    def find():
        for p in inst.delivered("alice"):
            data = p.read_bytes().decode()
            if f"Subject: {subject}\n" in data:
                m = re.search(r"^Received: (.*?)\n(?!\t)", data, re.S | re.M)
                return m.group(1)
        return None
    return wait_until(find, 30, what=f"delivery of {subject}")


# client address -> (name in logs, warning Postfix logs first or None)
EXPECTED = {
    CONFIRMED: ("confirmed.test", None),
    REVERSE_ONLY: ("unknown", "hostname reverse-only.test does not resolve to address "
                              "127.0.0.3: Name or service not known"),
    NO_PTR: ("unknown", None),
    ELSEWHERE: ("unknown", "hostname elsewhere.test does not resolve to address 127.0.0.5"),
    PTR_SERVFAIL: ("unknown", None),
    FORWARD_SERVFAIL: ("unknown", "hostname flaky.test does not resolve to address 127.0.0.7: "
                                  "Temporary failure in name resolution"),
    NUMERIC: ("unknown", "numeric hostname: 1.2.3.4"),
}


def test_client_names_in_logs_and_received(make_instance, dns):
    inst = names_instance(make_instance, dns)
    ids = {}
    for addr in EXPECTED:
        c, _ = connect(inst, addr)
        with c:
            ids[addr] = send_message(c, f"from {addr}")
            assert c.cmd("QUIT")[0] == 221
    for addr, (name, warning) in EXPECTED.items():
        namaddr = re.escape(f"{name}[{addr}]")
        [connected] = inst.wait_log(rf"^connect from {namaddr}$", program="smtpd")
        inst.wait_log(rf"^{ids[addr]}: client={namaddr}$", program="smtpd")
        inst.wait_log(rf"^disconnect from {namaddr} ehlo=1 mail=1 rcpt=1 data=1 quit=1 "
                      r"commands=5$", program="smtpd")
        if warning:
            # Logged before the connection, as Postfix does.
            [warned] = inst.find_log("^warning: " + re.escape(warning) + "$", program="smtpd")
            assert warned.index < connected.index
        assert received_of(inst, f"from {addr}").startswith(
            f"from {HELO} ({name} [{addr}])\n\tby mx.test.example (Postern) with ESMTP id "
            f"{ids[addr]}\n\tfor <alice@localhost>; ")
    # No warning for a missing or failing PTR record.
    assert not inst.find_log(r"127\.0\.0\.[46]\b.*warning|warning:.*127\.0\.0\.[46]\b")


def test_without_helo_the_name_stands_for_it(make_instance, dns):
    inst = names_instance(make_instance, dns)
    for addr, name in ((CONFIRMED, "confirmed.test"), (NO_PTR, "unknown")):
        c, _ = connect(inst, addr)
        with c:
            qid = send_message(c, f"no helo from {addr}", helo=None)
        assert received_of(inst, f"no helo from {addr}").startswith(
            f"from {name} ({name} [{addr}])\n\tby mx.test.example (Postern) with SMTP id {qid}")


def test_ipv6_client(make_instance, dns):
    port6 = free_port6()
    inst = names_instance(make_instance, dns, ipv6_port=port6)
    c, _ = connect(inst, host="::1", port=port6)
    with c:
        qid = send_message(c, "over ipv6")
        assert c.cmd("QUIT")[0] == 221
    inst.wait_log(r"^connect from six\.test\[::1\]$", program="smtpd")
    inst.wait_log(rf"^{qid}: client=six\.test\[::1\]$", program="smtpd")
    assert received_of(inst, "over ipv6").startswith(
        f"from {HELO} (six.test [IPv6:::1])\n\tby mx.test.example (Postern) with ESMTP id {qid}")


def test_ipv6_client_without_name(make_instance, dns):
    dns.restart(hosts=[])
    port6 = free_port6()
    inst = names_instance(make_instance, dns, ipv6_port=port6)
    c, _ = connect(inst, host="::1", port=port6)
    with c:
        qid = send_message(c, "over ipv6, unnamed")
    inst.wait_log(r"^connect from unknown\[::1\]$", program="smtpd")
    assert received_of(inst, "over ipv6, unnamed").startswith(
        f"from {HELO} (unknown [IPv6:::1])\n\tby mx.test.example (Postern) with ESMTP id {qid}")


def rcpt_reply(inst, addr):
    c, _ = connect(inst, addr)
    with c:
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        return c.cmd("RCPT TO:<alice@localhost>")


OK = (250, ["2.1.5 Ok"])


def unknown_client(code, addr, reverse=False):
    dsn = f"{code // 100}.7.{1 if reverse else 25}"
    what = "reverse hostname" if reverse else "hostname"
    return (code, [f"{dsn} Client host rejected: cannot find your {what}, [{addr}]"])


# What the installed Postfix answers, with unknown_client_reject_code = 550.
UNKNOWN_CLIENT_550 = {
    CONFIRMED: OK,
    REVERSE_ONLY: unknown_client(550, REVERSE_ONLY),
    NO_PTR: unknown_client(550, NO_PTR),
    ELSEWHERE: unknown_client(550, ELSEWHERE),
    PTR_SERVFAIL: unknown_client(450, PTR_SERVFAIL),
    FORWARD_SERVFAIL: unknown_client(450, FORWARD_SERVFAIL),
    NUMERIC: unknown_client(550, NUMERIC),
}
UNKNOWN_REVERSE_550 = {
    CONFIRMED: OK,
    REVERSE_ONLY: OK,
    NO_PTR: unknown_client(550, NO_PTR, reverse=True),
    ELSEWHERE: OK,
    PTR_SERVFAIL: unknown_client(450, PTR_SERVFAIL, reverse=True),
    FORWARD_SERVFAIL: OK,
    NUMERIC: unknown_client(550, NUMERIC, reverse=True),
}


@pytest.mark.parametrize("restriction,expected", [
    ("reject_unknown_client_hostname", UNKNOWN_CLIENT_550),
    ("reject_unknown_reverse_client_hostname", UNKNOWN_REVERSE_550),
])
def test_unknown_client_restrictions(make_instance, dns, restriction, expected):
    inst = names_instance(make_instance, dns, f"smtpd_client_restrictions = {restriction}",
                          "unknown_client_reject_code = 550")
    replies = {addr: rcpt_reply(inst, addr) for addr in expected}
    assert replies == expected


def test_unknown_client_default_code_and_log(make_instance, dns):
    inst = names_instance(make_instance, dns,
                          "smtpd_client_restrictions = reject_unknown_client_hostname")
    assert rcpt_reply(inst, ELSEWHERE) == unknown_client(450, ELSEWHERE)
    assert rcpt_reply(inst, CONFIRMED) == OK
    inst.wait_log(
        r"^NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.5\]: 450 4\.7\.25 Client host rejected: "
        r"cannot find your hostname, \[127\.0\.0\.5\]; "
        rf"from=<{SENDER}> to=<alice@localhost> proto=ESMTP helo=<{HELO}>$", program="smtpd")


def test_check_client_access_by_name(make_instance, dns):
    inst = names_instance(make_instance, dns,
                          "smtpd_client_restrictions = check_client_access "
                          "inline:{confirmed.test=REJECT, {unknown=DEFER no name}}")
    assert rcpt_reply(inst, CONFIRMED) == (
        554, ["5.7.1 <confirmed.test[127.0.0.2]>: Client host rejected: Access denied"])
    assert rcpt_reply(inst, NO_PTR) == (
        450, ["4.7.1 <unknown[127.0.0.4]>: Client host rejected: no name"])


def test_peername_lookup_off(make_instance, dns):
    inst = names_instance(make_instance, dns, "smtpd_peername_lookup = no",
                          "smtpd_client_restrictions = reject_unknown_client_hostname",
                          "unknown_client_reject_code = 550")
    # Without a lookup the name is unknown for good (Postfix: 550, not 450).
    assert rcpt_reply(inst, CONFIRMED) == unknown_client(550, CONFIRMED)
    inst.wait_log(r"^connect from unknown\[127\.0\.0\.2\]$", program="smtpd")
    assert "query[PTR]" not in dns.log_text()


def test_silent_name_server_delays_only_that_greeting(make_instance, dns):
    inst = names_instance(make_instance, dns,
                          "smtpd_client_restrictions = reject_unknown_client_hostname",
                          "unknown_client_reject_code = 550")
    t = time.monotonic()
    slow = RawSMTP(inst.port, source=(SILENT, 0))
    with slow:
        # Another client is greeted at once meanwhile, under its name.
        c, took = connect(inst, CONFIRMED)
        with c:
            assert took < 1.0, took
            assert c.cmd("QUIT")[0] == 221
        assert slow.read_reply()[0] == 220
        waited = time.monotonic() - t
        assert 1.8 <= waited < 4.0, waited
        assert slow.cmd(f"EHLO {HELO}")[0] == 250
        assert slow.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        # No answer in time is a temporary failure: 450 whatever the code.
        assert slow.cmd("RCPT TO:<alice@localhost>") == unknown_client(450, SILENT)
    inst.wait_log(r"^connect from unknown\[127\.0\.0\.9\]$", program="smtpd")


def test_name_server_down(make_instance):
    silent = SilentServer()
    try:
        inst = make_instance(extra_main=[f"dns_servers = {silent.servers}",
                                         "smtpd_peername_lookup_timeout = 1s"])
        c, took = connect(inst, CONFIRMED)
        with c:
            assert 0.9 <= took < 3.0, took
            assert c.cmd("QUIT")[0] == 221
        inst.wait_log(r"^connect from unknown\[127\.0\.0\.2\]$", program="smtpd")
    finally:
        silent.stop()
