"""Milter macros and smtpd_milter_maps, Postern against the installed
Postfix (postfix_reference.py) with the same libmilter milter
(pymilter_script.py, one process per MTA) and the same session: STARTTLS,
AUTH through the same private Dovecot, MAIL with AUTH=, two RCPTs, a
message, a second transaction with the null sender. Every macro list holds
every macro name Postfix knows, so each value either MTA has is seen; the
milter records the macros libmilter gives it at each stage, and the two
records must be the same but for what differs by nature (the version in
v, the queue ids, the ports). milter_macro_defaults fills what has no
value, written each way Postfix takes.

smtpd_milter_maps: a cidr table keyed by the client address chooses the
milters of a session (DISABLE: none), the same for both MTAs; an address
the table does not list gets smtpd_milters.
"""

import re
import socket
import subprocess
import time

import pytest

from dnsmasq_fixture import DnsServer
from milter_peers import ALL_ACTIONS, FakeMilter, PyMilter
from postern_instance import HELO, Instance, RawSMTP, free_port, wait_until
from postfix_reference import started_postfix
from sendmail_helpers import run_sendmail
from smtpd_fixture import TLSRaw, make_cert

ALL_MACROS = ("j _ v {daemon_name} {daemon_addr} {daemon_port} {client_addr} {client_name} "
              "{client_port} {client_ptr} {client_resolve} {client_connections} i "
              "{auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer} "
              "{rcpt_addr} {rcpt_host} {rcpt_mailer} {tls_version} {cipher} {cipher_bits} "
              "{cert_subject} {cert_issuer}")
STAGE_LISTS = ("connect", "helo", "mail", "rcpt", "data", "end_of_header", "end_of_data",
               "unknown_command")
# Mail for other domains waits for a relay nobody runs (both MTAs).
RELAYHOST = "[127.0.0.1]:9"


def common_main_cf(milter, dovecot, cert, key):
    return [f"smtpd_milters = {milter.spec}",
            *(f"milter_{stage}_macros = {ALL_MACROS}" for stage in STAGE_LISTS),
            f"smtpd_tls_cert_file = {cert}", f"smtpd_tls_key_file = {key}",
            "smtpd_tls_security_level = may",
            "smtpd_sasl_auth_enable = yes", "smtpd_sasl_type = dovecot",
            f"smtpd_sasl_path = inet:127.0.0.1:{dovecot.auth_port}",
            # The client's name would come from /etc/hosts for Postfix and
            # from the tests' DNS for Postern: neither is looked up.
            "smtpd_peername_lookup = no",
            f"relayhost = {RELAYHOST}",
            "mynetworks = 127.0.0.0/8",
            # defaults for what has no value (no client certificate; no
            # AUTH= in the second transaction), in each way of writing one
            "milter_macro_defaults = {cert_subject}=no-cert, auth_author=nobody, "
            "{ {cert_issuer} = no issuer }"]


class Pair:
    """One Postern and one Postfix, each with its own PyMilter."""

    def __init__(self, dovecot, extra=(), maps=None, rcpt_rej=False):
        self.milters = {"postern": PyMilter(rcpt_rej=rcpt_rej),
                        "postfix": PyMilter(rcpt_rej=rcpt_rej)}
        self.postfix = self.postern = None
        try:
            self.postern = Instance(free_port())
            cert, key = make_cert(self.postern.root)
            self.postern.root.chmod(0o755)   # Postfix's smtpd reads the same key
            lines = {name: common_main_cf(m, dovecot, cert, key) + list(extra)
                     for name, m in self.milters.items()}
            if maps:
                for name, m in self.milters.items():
                    table = self.postern.root / f"milter_map.{name}"
                    table.write_text(maps(m))
                    lines[name].append(f"smtpd_milter_maps = cidr:{table}")
            self.postern.write_main_cf(lines["postern"])
            self.postern.start()
            self.postfix = started_postfix(lines["postfix"])   # MASTER_CF has tlsmgr
        except BaseException:
            self.close()
            raise

    def port(self, name):
        return (self.postern if name == "postern" else self.postfix).port

    def close(self):
        if self.postern:
            print(self.postern.log_tail(60))
            self.postern.cleanup()
        if self.postfix:
            print(self.postfix.log_tail(60))
            self.postfix.cleanup()
        for m in self.milters.values():
            m.close()


@pytest.fixture(scope="module")
def dovecot(dovecot_session):
    """The session's Dovecot (conftest.py), running."""
    return dovecot_session.start()


@pytest.fixture(scope="module")
def pair(dovecot):
    p = Pair(dovecot)
    yield p
    p.close()


def queued(reply):
    code, lines = reply
    assert code == 250, reply
    return lines[-1].rsplit(" ", 1)[1]


def full_session(port):
    """The session both MTAs get; returns the queue id of its message and
    the client's port."""
    c = TLSRaw.logged_in(port, "alice@example.com", "alice-pw")
    assert c.cmd("MAIL FROM:<sender@example.org> AUTH=<alice+2Bx@example.com>")[0] == 250
    assert c.cmd("RCPT TO:<bob@example.net>")[0] == 250
    assert c.cmd('RCPT TO:<"odd user"@example.net>')[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"From: alice@example.com\r\nSubject: macros\r\n\r\nhello\r\n.\r\n")
    qid = queued(c.read_reply())
    assert c.cmd("MAIL FROM:<>")[0] == 250
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("QUIT")[0] == 221
    client_port = c.sock.getsockname()[1]
    c.close()
    return qid, client_port


def normalized(records, qid, client_port, daemon_port):
    """(stage, arguments, macros) of one session's records, with what
    differs by nature replaced by names."""
    out = []
    for r in records:
        macros = {k: v for k, v in r["macros"].items() if v is not None}
        subst = {"i": (qid, "QUEUE-ID"), "{client_port}": (str(client_port), "CLIENT-PORT"),
                 "{daemon_port}": (str(daemon_port), "DAEMON-PORT")}
        for name, (want, shown) in subst.items():
            if name in macros:
                assert macros[name] == want, (r["stage"], name, macros[name], want)
                macros[name] = shown
        if "v" in macros:
            assert macros["v"].split()[0] in ("Postfix", "Postern"), macros["v"]
            macros["v"] = "MAIL-NAME VERSION"
        args = dict(r["args"])
        if args.get("hostaddr"):
            assert args["hostaddr"] == ["127.0.0.1", client_port]
            args["hostaddr"] = "ADDR"
        if r["stage"] == "header" and args["name"].lower() in ("message-id", "date"):
            # each MTA's own (Postfix spells it Message-Id, Postern Message-ID)
            args["name"], args["value"] = args["name"].lower(), "..."
        out.append((r["stage"], args, macros))
    return out


def session_records(pymilter, start, client_port):
    """The records of the session whose client used client_port (an MTA's
    start-up probe is a session too)."""
    def mine():
        recs = pymilter.records()[start:]
        begin = [i for i, r in enumerate(recs) if r["stage"] == "connect"
                 and (r["args"].get("hostaddr") or [None, None])[1] == client_port]
        if not begin:
            return None
        # Another session's records may come between (a probe's close).
        recs = [r for r in recs[begin[0]:] if r["conn"] == recs[begin[0]]["conn"]]
        end = [i for i, r in enumerate(recs) if r["stage"] == "close"]
        return recs[:end[0] + 1] if end else None
    return wait_until(mine, 20, what="the session's records")


def test_every_macro_at_every_stage_as_postfix_sends_it(pair):
    seen = {}
    for name, m in pair.milters.items():
        start = len(m.records())
        qid, client_port = full_session(pair.port(name))
        seen[name] = normalized(session_records(m, start, client_port), qid, client_port,
                                pair.port(name))
    postern, postfix = seen["postern"], seen["postfix"]
    assert [s for s, _, _ in postern] == [s for s, _, _ in postfix]
    for (stage, pa, pm), (_, fa, fm) in zip(postern, postfix):
        assert pm == fm, f"{stage} macros:\nPostern {pm}\nPostfix {fm}"
        assert pa == fa, f"{stage} arguments:\nPostern {pa}\nPostfix {fa}"
    # what the comparison covered: the values the issue names
    eom = [macros for stage, _, macros in postfix if stage == "eom"][0]
    assert eom["{cert_subject}"] == "no-cert" and eom["{cert_issuer}"] == "no issuer"
    assert [m for s, _, m in postfix if s == "mail"][-1]["{auth_author}"] == "nobody"
    for name in ("j", "_", "{daemon_name}", "{daemon_addr}", "{client_addr}", "{client_name}",
                 "{client_port}", "{client_ptr}", "{client_connections}", "{tls_version}",
                 "{cipher}", "{cipher_bits}", "i", "{auth_type}", "{auth_authen}",
                 "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}", "{rcpt_addr}",
                 "{rcpt_host}", "{rcpt_mailer}", "v"):
        assert name in eom, name


# --- SMFIP_RCPT_REJ -------------------------------------------------------------

def test_rejected_recipients_reach_a_milter_that_asks_as_with_postfix(dovecot):
    """A milter that negotiated SMFIP_RCPT_REJ hears the recipients the
    restrictions refused, with {rcpt_mailer}=error and {rcpt_host} and
    {rcpt_addr} taken from the reply as Postfix takes them; its answer
    changes nothing (rcpt-reject@ gets the restriction's 554, not the
    milter's REJECT reply)."""
    p = Pair(dovecot, rcpt_rej=True, extra=[
        "smtpd_recipient_restrictions = check_recipient_access inline:{ "
        "{rcpt-reject@example.net=REJECT no thanks}, {later@example.net=DEFER try later} }, "
        "permit"])
    try:
        seen = {}
        for name, m in p.milters.items():
            start = len(m.records())
            c = RawSMTP(p.port(name), timeout=30)
            assert c.read_reply()[0] == 220
            assert c.cmd(f"EHLO {HELO}")[0] == 250
            assert c.cmd("MAIL FROM:<sender@example.org>")[0] == 250
            assert c.cmd("RCPT TO:<bob@example.net>")[0] == 250
            assert c.cmd("RCPT TO:<rcpt-reject@example.net>") == (
                554, ["5.7.1 <rcpt-reject@example.net>: Recipient address rejected: no thanks"])
            assert c.cmd("RCPT TO:<later@example.net>")[0] == 450
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: rcpt_rej\r\n\r\nhello\r\n.\r\n")
            qid = queued(c.read_reply())
            assert c.cmd("QUIT")[0] == 221
            client_port = c.sock.getsockname()[1]
            c.close()
            seen[name] = [r for r in normalized(session_records(m, start, client_port), qid,
                                                client_port, p.port(name)) if r[0] == "rcpt"]
        assert seen["postern"] == seen["postfix"]
        got = [(a["rcpt"], {k: v for k, v in mac.items() if k.startswith("{rcpt_")})
               for _, a, mac in seen["postfix"]]
        assert got[1:] == [
            ("<rcpt-reject@example.net>", {"{rcpt_mailer}": "error", "{rcpt_host}": "5.7.1",
                                           "{rcpt_addr}": "Recipient address rejected: no thanks"}),
            ("<later@example.net>", {"{rcpt_mailer}": "error", "{rcpt_host}": "4.7.1",
                                     "{rcpt_addr}": "Recipient address rejected: try later"})]
    finally:
        p.close()


# --- smtpd_milter_maps ---------------------------------------------------------

def milter_map(closed):
    """The table for a pair whose PyMilter is m: by client address."""
    return lambda m: (f"127.0.0.2 DISABLE\n"
                      f"127.0.0.3 {closed}\n"
                      f"127.0.0.4 {{ {closed}, default_action=accept }}, {m.spec}\n")


@pytest.fixture(scope="module")
def mapped(dovecot):
    p = Pair(dovecot, maps=milter_map(closed := f"inet:127.0.0.1:{free_port()}"))
    p.closed = closed
    yield p
    p.close()


def mail_from(port, source):
    """Banner code, and the reply to MAIL, from a client bound to source."""
    c = RawSMTP(port, source=(source, 0), timeout=30)
    banner = c.read_reply()[0]
    assert c.cmd(f"EHLO {HELO}")[0] == 250
    reply = c.cmd("MAIL FROM:<sender@example.org>")
    c.cmd("QUIT")
    client_port = c.sock.getsockname()[1]
    c.close()
    return banner, reply, client_port


def saw(pymilter, start, source, client_port):
    return any(r["stage"] == "connect" and r["args"]["hostaddr"] == [source, client_port]
               for r in pymilter.records()[start:])


@pytest.mark.parametrize("source,want,milter_sees", [
    ("127.0.0.1", (250, ["2.1.0 Ok"]), True),                      # not listed: smtpd_milters
    ("127.0.0.2", (250, ["2.1.0 Ok"]), False),                     # DISABLE
    ("127.0.0.3", (451, ["4.7.1 Service unavailable - try again later"]), False),   # milter down
    ("127.0.0.4", (250, ["2.1.0 Ok"]), True),                      # down but accept, then ours
])
def test_milter_maps_choose_each_clients_milters(mapped, source, want, milter_sees):
    for name, m in mapped.milters.items():
        start = len(m.records())
        banner, reply, client_port = mail_from(mapped.port(name), source)
        assert (banner, reply) == (220, want), name
        if milter_sees:
            wait_until(lambda: saw(m, start, source, client_port), 20,
                       what=f"{name}'s milter to see {source}")
        else:
            assert not saw(m, start, source, client_port), name
    if source in ("127.0.0.3", "127.0.0.4"):
        mapped.postern.wait_log(
            rf"warning: connect to Milter service {mapped.closed}: Connection refused")


def test_milter_maps_lookup_error_falls_back_to_smtpd_milters(make_instance):
    """A table that cannot answer (a tcp: server that is down): a warning
    naming the table and the address, and smtpd_milters, as Postfix does
    (its own tcp: client tries for ten seconds first, so this one is not
    run against it)."""
    m = PyMilter()
    try:
        maps = f"tcp:127.0.0.1:{free_port()}"
        inst = make_instance([f"smtpd_milters = {m.spec}", f"smtpd_milter_maps = {maps}"])
        start = len(m.records())
        banner, reply, client_port = mail_from(inst.port, "127.0.0.1")
        assert (banner, reply[0]) == (220, 250)
        inst.wait_log(rf'warning: {re.escape(maps)} lookup error for "127\.0\.0\.1"')
        wait_until(lambda: saw(m, start, "127.0.0.1", client_port), 20,
                   what="the milter to see the session")
    finally:
        m.close()


# --- milter_protocol -------------------------------------------------------------

def collapse_aborts(stages):
    return [s for i, s in enumerate(stages) if not (s == "abort" and stages[i - 1] == "abort")]


def session_connection(m, client_port):
    """The number of the FakeMilter connection that heard the client on
    client_port connect (an MTA's start-up probe is a session too)."""
    for ev in m.of("connect"):
        rest = ev.data.split(b"\0", 1)[1]
        if rest[:1] == b"4" and int.from_bytes(rest[1:3], "big") == client_port:
            return ev.conn
    return None

def test_each_protocol_version_negotiates_and_hears_as_with_postfix(make_instance):
    """One milter per milter_protocol version (the per-milter protocol=
    setting): what the MTA offers in SMFIC_OPTNEG and which events of a
    session each one hears, the same as Postfix."""
    versions = {"2": 2, "3": 3, "4": 4, "6": 6}
    seen = {}
    for mta in ("postern", "postfix"):
        milters = {v: FakeMilter(version=n, actions=0x3F if n < 6 else ALL_ACTIONS)
                   for v, n in versions.items()}
        lines = ["smtpd_milters = " + ", ".join(
                     f"{{ {m.spec}, protocol={v} }}" for v, m in milters.items()),
                 "smtpd_peername_lookup = no", f"relayhost = {RELAYHOST}"]
        mta_inst = None
        try:
            if mta == "postern":
                mta_inst = make_instance(lines)
            else:
                mta_inst = started_postfix(lines)
            c = RawSMTP(mta_inst.port, timeout=30)
            client_port = c.sock.getsockname()[1]
            assert c.read_reply()[0] == 220
            assert c.cmd(f"EHLO {HELO}")[0] == 250
            assert c.cmd("XUNKNOWN")[0] == 500   # as Postfix 3.7
            assert c.cmd("MAIL FROM:<sender@example.org>")[0] == 250
            assert c.cmd("RCPT TO:<bob@example.net>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: versions\r\n\r\nbody\r\n.\r\n")
            assert c.read_reply()[0] == 250
            assert c.cmd("QUIT")[0] == 221
            c.close()
            seen[mta] = {}
            for v, m in milters.items():
                conn = wait_until(lambda: session_connection(m, client_port), 20,
                                  what=f"{mta}'s version {v} milter to hear the session")
                wait_until(lambda: "quit" in m.stages(conn), 20,
                           what=f"{mta}'s version {v} milter to hear QUIT")
                version, actions, protocol = m.offered[conn - 1]
                # Postfix sends ABORT once more at the end of the session
                seen[mta][v] = ((version, actions, protocol), collapse_aborts(m.stages(conn)))
        finally:
            if mta == "postfix" and mta_inst:
                print(mta_inst.log_tail(40))
                mta_inst.cleanup()
            for m in milters.values():
                m.close()
    for v in versions:
        assert seen["postern"][v] == seen["postfix"][v], (v, seen["postern"][v],
                                                           seen["postfix"][v])
    # the versions differ: 2 hears no unknown command and no DATA
    assert "unknown" not in seen["postfix"]["2"][1] and "data" in seen["postfix"]["6"][1]


# --- non_smtpd_milters -------------------------------------------------------------

def test_local_submission_macros_as_postfix_sends_them(make_instance):
    """sendmail -f ... through non_smtpd_milters (cleanup runs the whole
    milter session): the same events and macros as Postfix's cleanup."""
    seen = {}
    msg = b"From: sender@example.org\nSubject: local macros\n\nhello\n"
    lines = lambda m: [f"non_smtpd_milters = {m.spec}", f"relayhost = {RELAYHOST}",
                       *(f"milter_{stage}_macros = {ALL_MACROS}" for stage in STAGE_LISTS)]
    for mta in ("postern", "postfix"):
        m = PyMilter()
        mta_inst = None
        try:
            if mta == "postern":
                mta_inst = make_instance(lines(m))
                r = run_sendmail(mta_inst, ["-f", "sender@example.org", "bob@example.net"], msg)
            else:
                mta_inst = started_postfix(lines(m))
                r = subprocess.run(["/usr/sbin/sendmail", "-f", "sender@example.org",
                                    "bob@example.net"], input=msg, capture_output=True,
                                   env=mta_inst.env(), timeout=30)
            assert r.returncode == 0, r.stderr
            recs = wait_until(lambda: (lambda rs: rs if any(x["stage"] == "close" for x in rs)
                                       else None)(m.records()), 30,
                              what=f"{mta}'s milter to see the message")
            out = []
            for rec in recs:
                macros = {k: v for k, v in rec["macros"].items() if v is not None}
                if "i" in macros:
                    macros["i"] = "QUEUE-ID"
                if "v" in macros:
                    macros["v"] = "MAIL-NAME VERSION"
                args = dict(rec["args"])
                if rec["stage"] == "header" and args["name"].lower() in ("message-id", "date"):
                    args["name"], args["value"] = args["name"].lower(), "..."
                out.append((rec["stage"], args, macros))
            seen[mta] = out
        finally:
            if mta == "postfix" and mta_inst:
                print(mta_inst.log_tail(40))
                mta_inst.cleanup()
            m.close()
    assert [s for s, _, _ in seen["postern"]] == [s for s, _, _ in seen["postfix"]]
    for (stage, pa, pm), (_, fa, fm) in zip(seen["postern"], seen["postfix"]):
        assert pm == fm, f"{stage} macros:\nPostern {pm}\nPostfix {fm}"
        assert pa == fa, f"{stage} arguments:\nPostern {pa}\nPostfix {fa}"


# --- milter_connect_timeout ----------------------------------------------------------

def test_connect_timeout_then_default_action_as_postfix(make_instance):
    """A milter whose listen queue is full never completes the connect:
    after milter_connect_timeout the default action (tempfail: 451 at
    MAIL) and Postfix's warning, from both MTAs."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname())   # the queue's one place
    spec = f"inet:127.0.0.1:{full.getsockname()[1]}"
    lines = [f"smtpd_milters = {spec}", "milter_connect_timeout = 1s",
             "smtpd_peername_lookup = no"]
    warning = rf"warning: connect to Milter service {re.escape(spec)}: Connection timed out"
    pf = None
    try:
        for mta in ("postern", "postfix"):
            if mta == "postern":
                inst = make_instance(lines)
            else:
                inst = pf = started_postfix(lines)
            began = time.monotonic()
            banner, reply, _ = mail_from(inst.port, "127.0.0.1")
            assert (banner, reply) == (220, (451, ["4.7.1 Service unavailable - try again later"]))
            assert time.monotonic() - began >= 0.9, mta
            if mta == "postern":
                inst.wait_log(warning)
            else:
                wait_until(lambda: re.search(warning, pf.log.read_text()), 10,
                           what="Postfix's warning")
    finally:
        if pf:
            print(pf.log_tail(30))
            pf.cleanup()
        filler.close()
        full.close()


# --- the client's names ----------------------------------------------------------------

@pytest.mark.parametrize("source,hostname,want", [
    # PTR confirmed.test, which resolves back
    ("127.0.0.2", "confirmed.test",
     {"_": "confirmed.test [127.0.0.2]", "{client_name}": "confirmed.test",
      "{client_ptr}": "confirmed.test", "{client_resolve}": "OK"}),
    # PTR elsewhere.test, whose address is another
    ("127.0.0.5", "[127.0.0.5]",
     {"_": "elsewhere.test [127.0.0.5] (may be forged)", "{client_name}": "unknown",
      "{client_ptr}": "elsewhere.test", "{client_resolve}": "FORGED"}),
    # no PTR at all
    ("127.0.0.4", "[127.0.0.4]",
     {"_": "unknown [127.0.0.4]", "{client_name}": "unknown", "{client_ptr}": "unknown",
      "{client_resolve}": "FAIL"}),
])
def test_client_name_macros_from_dns(make_instance, source, hostname, want):
    """The client's names as Postfix's smtpd_milter_eval gives them, with
    the tests' dnsmasq (which Postfix cannot be pointed at): the confirmed
    name, the PTR name, their status, and SMFIC_CONNECT's host name."""
    server = DnsServer(hosts=[("confirmed.test", "127.0.0.2"), ("elsewhere.test", "127.0.0.99")],
                       ptrs=[("127.0.0.5", "elsewhere.test")])
    server.start()
    m = FakeMilter()
    try:
        inst = make_instance([f"smtpd_milters = {m.spec}", f"dns_servers = {server.servers}",
                              "milter_connect_macros = _ {client_name} {client_ptr} "
                              "{client_resolve}"])
        mail_from(inst.port, source)
        conn = wait_until(lambda: next((e for e in m.of("connect")
                                        if e.args()[0] == hostname), None), 20,
                          what="the session's connect event")
        assert conn.macros == want
    finally:
        m.close()
        server.close()


def test_milter_maps_answer_with_a_host_name(make_instance):
    """An endpoint by host name in a map's answer is resolved off the
    loop (getaddrinfo_a) when a session first needs it, then kept."""
    first = socket.getaddrinfo("localhost", 25, type=socket.SOCK_STREAM)[0][4][0]
    assert first == "127.0.0.1", f"this test wants localhost to be 127.0.0.1 first, not {first}"
    m = FakeMilter()
    try:
        inst = make_instance(start=False)
        table = inst.root / "milter_map"
        table.write_text(f"127.0.0.0/8 inet:localhost:{m.port}\n")
        inst.write_main_cf([f"smtpd_milter_maps = cidr:{table}"])
        inst.start()
        for _ in range(2):
            _, reply, client_port = mail_from(inst.port, "127.0.0.1")
            assert reply[0] == 250
            wait_until(lambda: session_connection(m, client_port), 20,
                       what="the milter to hear the session")
        assert not inst.find_log(r"warning: connect to Milter service")
    finally:
        m.close()
