"""SMTP client behaviour of remote against scripted servers: HELO when EHLO
is refused, the next MX after a 4xx greeting, a TLS handshake failure under
"may" retried in plain text, a cached connection that died replaced by a
fresh one without a deferral, and the reply to the final dot deciding the
accepted recipients.
"""

import re

import pytest

from dnsmasq_fixture import DnsServer
from postern_instance import HOSTNAME, simple_message, wait_until
from smtp_peers import HostileServer, Receiver, free_port_on

HOST = "127.0.0.40"


@pytest.fixture
def peers():
    made = []

    def start(peer):
        made.append(peer)
        return peer.start()

    yield start
    for peer in made:
        peer.stop()


def delivery(inst, qid, rcpt, timeout=30):
    rx = rf"^{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), .*dsn=(\S+), status=(\w+) \((.*)\)$"
    line = inst.wait_log(rx, program="smtp", timeout=timeout)[0]
    return re.match(rx, line.text).groups()


def routed(make_instance, servers, *extra):
    """An instance whose transport_maps send DOMAIN to [HOST]:port."""
    entries = ", ".join(f"{d}=smtp:[{HOST}]:{s.port}" for d, s in servers.items())
    return make_instance(extra_main=["dns_servers = 127.0.0.1:9",
                                     f"transport_maps = inline:{{ {entries} }}", *extra])


def test_helo_when_ehlo_is_refused(make_instance, peers):
    got = []

    def old_server(c):
        c.send("220 old.test SMTP\r\n")
        c.expect("EHLO")
        c.send("502 5.5.2 Error: command not recognized\r\n")
        c.expect("HELO")
        c.send("250 old.test\r\n")
        c.serve(messages=got)

    srv = peers(HostileServer(HOST, old_server))
    inst = routed(make_instance, {"old.test": srv})
    qid = inst.send(simple_message("helo", test_id="helo"), rcpts=["ann@old.test"])
    assert delivery(inst, qid, "ann@old.test")[1:3] == ("2.0.0", "sent")
    lines = srv.conns[0].lines
    assert f"HELO {HOSTNAME}" in lines
    mail = [l for l in lines if l.upper().startswith("MAIL")]
    assert mail == ["MAIL FROM:<sender@example.org>"]   # no ESMTP parameters after HELO
    assert any("X-Test-Id: helo" in l for l in got[0])


def test_4xx_greeting_moves_on_to_the_next_mx(make_instance, peers):
    port = free_port_on("127.0.0.42", "127.0.0.41")

    def busy(c):
        c.send("421 4.3.2 Too busy, come back later\r\n")

    peers(HostileServer("127.0.0.41", busy, port=port))
    rcv = peers(Receiver("127.0.0.42", port))
    dns = DnsServer(mx=[("busy.test", "mxa.busy.test", 10), ("busy.test", "mxb.busy.test", 20)],
                    hosts=[("mxa.busy.test", "127.0.0.41"), ("mxb.busy.test", "127.0.0.42")])
    dns.start()
    try:
        inst = make_instance(extra_main=[f"dns_servers = {dns.servers}",
                                         f"smtp_tcp_port = {port}"])
        qid = inst.send(simple_message("busy"), rcpts=["bo@busy.test"])
        relay, dsn, status, _ = delivery(inst, qid, "bo@busy.test")
        assert (relay, status) == (f"mxb.busy.test[127.0.0.42]:{port}", "sent")
        assert inst.find_log(r"^host mxa\.busy\.test\[127\.0\.0\.41\] refused to talk to me: "
                             r"421 4\.3\.2 Too busy, come back later$", program="smtp")
        rcv.wait_messages(1)
    finally:
        dns.close()


def test_tls_handshake_failure_under_may_retries_in_plain_text(make_instance, peers):
    got = []

    def broken_tls(c):
        c.greet_and_ehlo(extensions=("STARTTLS",))
        line = c.read_line()
        if line.upper() == "STARTTLS":
            c.send("220 2.0.0 Ready to start TLS\r\n")
            c.send(b"this is no TLS server hello\r\n" * 8)
            c.wait_close(10)
            return
        assert line.upper().startswith("MAIL"), line
        c.send("250 2.1.0 Ok\r\n")
        c.serve(messages=got)

    srv = peers(HostileServer(HOST, broken_tls))
    inst = routed(make_instance, {"badtls.test": srv}, "smtp_tls_security_level = may")
    qid = inst.send(simple_message("bad tls"), rcpts=["cid@badtls.test"])
    assert delivery(inst, qid, "cid@badtls.test")[2] == "sent"
    assert inst.find_log(rf"^{qid}: Cannot start TLS: handshake failure with {HOST}\[{HOST}\]: "
                         r".*; trying again without TLS$", program="smtp")
    assert srv.connections == 2 and len(got) == 1


def test_dead_cached_connection_is_replaced_without_deferral(make_instance, peers):
    got = []

    def hangs_up_on_second_mail(c):
        c.greet_and_ehlo(extensions=())
        seen = []

        def on_mail(conn):
            seen.append(1)
            if len(seen) == 1:
                return False
            conn.sock.close()   # the reused connection dies under the client
            raise ConnectionError("hung up")

        c.serve(messages=got, on_mail=on_mail)

    srv = peers(HostileServer(HOST, hangs_up_on_second_mail))
    inst = routed(make_instance, {"flaky.test": srv}, "smtp_connection_cache_time_limit = 30s")
    q1 = inst.send(simple_message("first"), rcpts=["dot@flaky.test"])
    assert delivery(inst, q1, "dot@flaky.test")[2] == "sent"
    q2 = inst.send(simple_message("second"), rcpts=["dot@flaky.test"])
    assert delivery(inst, q2, "dot@flaky.test")[2] == "sent"
    assert srv.connections == 2 and len(got) == 2
    assert not inst.find_log(r"status=deferred", program="smtp")


@pytest.mark.parametrize("final, dsn, status", [
    ("554 5.7.1 Message rejected as spam", "5.7.1", "bounced"),
    ("451 4.3.0 Temporary local problem", "4.3.0", "deferred"),
])
def test_reply_to_the_final_dot_decides(make_instance, peers, final, dsn, status):
    def judge(c):
        c.greet_and_ehlo()
        c.serve(final=final)

    srv = peers(HostileServer(HOST, judge))
    inst = routed(make_instance, {"judge.test": srv})
    qid = inst.send(simple_message("judged"), rcpts=["eli@judge.test", "fay@judge.test"],
                    sender="alice@localhost")
    for rcpt in ("eli@judge.test", "fay@judge.test"):
        assert delivery(inst, qid, rcpt) == (
            f"{HOST}[{HOST}]:{srv.port}", dsn, status,
            f"host {HOST}[{HOST}] said: {final} (in reply to end of DATA command)")


def test_dsn_parameters_are_passed_on(make_instance, peers):
    got = []

    def dsn_server(c):
        c.greet_and_ehlo(extensions=("PIPELINING", "DSN"))
        c.serve(messages=got)

    srv = peers(HostileServer(HOST, dsn_server))
    inst = routed(make_instance, {"dsn.test": srv})
    with inst.smtp() as s:
        assert s.ehlo("client.example")[0] == 250
        assert s.mail("sender@example.org", ["RET=HDRS", "ENVID=abc+2Bdef"])[0] == 250
        assert s.rcpt("gus@dsn.test", ["NOTIFY=SUCCESS,DELAY",
                                       "ORCPT=rfc822;orig+2Bgus@example.com"])[0] == 250
        assert s.rcpt("hal@dsn.test")[0] == 250
        code, resp = s.data(simple_message("dsn").replace("\n", "\r\n").encode())
        assert code == 250, resp
        qid = resp.decode().rsplit(" ", 1)[1]
    assert delivery(inst, qid, "gus@dsn.test")[2] == "sent"
    lines = srv.conns[0].lines
    assert "MAIL FROM:<sender@example.org> RET=HDRS ENVID=abc+2Bdef" in lines
    assert "RCPT TO:<gus@dsn.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig+2Bgus@example.com" \
        in lines
    assert "RCPT TO:<hal@dsn.test>" in lines
