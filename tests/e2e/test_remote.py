"""Remote delivery end to end: smtpd -> qmgr -> remote (smtp) -> a real SMTP
server on 127.0.0.0/8, with the test's own dnsmasq as the only DNS server
(dns_servers) and smtp_tcp_port pointing every MX at the receivers' port.

Covers MX order and fallback to the next MX, no MX (the A record), null MX,
NXDOMAIN, SERVFAIL then recovery, "loops back to myself", replies with more
than 100 records, per-recipient results in one transaction, SIZE, 8BITMIME,
PIPELINING (smtp-sink), relayhost and transport_maps, another Postern as
the receiver, and connection reuse over 1,000 messages.
"""

import re
import subprocess
import time

import pytest

from dnsmasq_fixture import DnsServer, query_mx_prefs_tcp
from postern_instance import (HOSTNAME, SENDER, process_table, simple_message, wait_port,
                              wait_until)
from smtp_peers import Receiver, SmtpSink, free_port_on

LOCAL_SENDER = "alice@localhost"   # bounces of the tests stay on this host

BIG_MX = 150   # records in big.test's MX reply: over the 100 remote keeps


def zone():
    """The MX and A records every test of this module shares."""
    mx = [("two.test", "mx1.two.test", 10), ("two.test", "mx2.two.test", 20),
          ("loop.test", HOSTNAME, 10),
          ("loop2.test", "self.loop2.test", 10),
          ("backup.test", "real.backup.test", 10), ("backup.test", HOSTNAME, 20),
          ("per.test", "mx.per.test", 10),
          ("size.test", "mx.size.test", 10),
          ("eight.test", "mx.eight.test", 10),
          ("sink.test", "mx.sink.test", 10),
          ("p2.test", "mx.p2.test", 10),
          ("reuse.test", "mx.reuse.test", 10),
          ("relay.test", "mx.relay.test", 10)]
    hosts = [("mx1.two.test", "127.0.0.2"), ("mx2.two.test", "127.0.0.3"),
             ("nomx.test", "127.0.0.4"),
             ("self.loop2.test", "127.0.0.1"),
             ("real.backup.test", "127.0.0.6"),
             ("mx.per.test", "127.0.0.5"),
             ("mx.size.test", "127.0.0.9"),
             ("mx.eight.test", "127.0.0.10"),
             ("mx.sink.test", "127.0.0.11"),
             ("mx.p2.test", "127.0.0.7"),
             ("mx.reuse.test", "127.0.0.8"),
             ("mx.relay.test", "127.0.0.12")]
    # big.test: the first 100 records of the reply name good hosts
    # (preference 10 and up); the 50 after them have the best preference
    # but point where no server listens. Only a client that stops at 100
    # records delivers. dnsmasq answers in the reverse of the command-line
    # order (the test checks that premise).
    for i in reversed(range(BIG_MX)):
        pref = 10 + i if i < 100 else 0
        mx.append(("big.test", f"mx{i}.big.test", pref))
        hosts.append((f"mx{i}.big.test", "127.0.0.13" if i < 100 else "127.0.0.14"))
    return mx, hosts


@pytest.fixture(scope="module")
def dns():
    mx, hosts = zone()
    server = DnsServer(mx=mx, hosts=hosts, null_mx=["null.test"]).start()
    yield server
    server.close()


@pytest.fixture
def receivers():
    """Start Receivers and SmtpSinks through this; all are stopped after."""
    made = []

    def start(peer):
        made.append(peer)
        return peer.start()

    yield start
    for peer in made:
        peer.stop()


def remote_instance(make_instance, dns, port, *extra):
    return make_instance(extra_main=[f"dns_servers = {dns.servers}", f"smtp_tcp_port = {port}",
                                     *extra])


def status_line(inst, qid, rcpt, timeout=30):
    """The smtp delivery line of rcpt, as (relay, dsn, status, text)."""
    rx = (rf"^{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), delay=[\d.]+, "
          r"delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=(\d\.\d+\.\d+), status=(\w+) \((.*)\)$")
    line = inst.wait_log(rx, program="smtp", timeout=timeout)[0]
    return re.match(rx, line.text).groups()


def test_preferred_mx_down_goes_to_the_next(make_instance, dns, receivers):
    port = free_port_on("127.0.0.3", "127.0.0.2")
    rcv = receivers(Receiver("127.0.0.3", port))
    inst = remote_instance(make_instance, dns, port)
    qid = inst.send(simple_message("two mx", test_id="twomx"), rcpts=["bob@two.test"])

    relay, dsn, status, text = status_line(inst, qid, "bob@two.test")
    assert (relay, dsn, status) == (f"mx2.two.test[127.0.0.3]:{port}", "2.0.0", "sent")
    assert text == "250 2.0.0 Ok: queued as R1"
    assert inst.find_log(rf"^connect to mx1\.two\.test\[127\.0\.0\.2\]:{port}: "
                         "Connection refused$", program="smtp")
    msg = rcv.wait_messages(1)[0]
    assert msg["rcpt_tos"] == ["bob@two.test"] and msg["mail_from"] == SENDER
    assert b"X-Test-Id: twomx" in msg["data"]
    assert msg["helo"] == HOSTNAME
    inst.wait_queue_empty()


def test_no_mx_uses_the_address_record(make_instance, dns, receivers):
    port = free_port_on("127.0.0.4")
    rcv = receivers(Receiver("127.0.0.4", port))
    inst = remote_instance(make_instance, dns, port)
    qid = inst.send(simple_message("no mx"), rcpts=["carol@nomx.test"])

    relay, dsn, status, _ = status_line(inst, qid, "carol@nomx.test")
    assert (relay, dsn, status) == (f"nomx.test[127.0.0.4]:{port}", "2.0.0", "sent")
    assert rcv.wait_messages(1)[0]["rcpt_tos"] == ["carol@nomx.test"]


@pytest.mark.parametrize("rcpt, dsn, text", [
    ("dan@null.test", "5.1.10", "Domain null.test does not accept mail (nullMX)"),
    ("dan@nosuch.test", "5.1.2", "Host or domain name not found. Name service error for "
                                 "name=nosuch.test type=MX: Host not found"),
    ("dan@loop.test", "5.4.6", "mail for loop.test loops back to myself"),
    ("dan@loop2.test", "5.4.6", "mail for loop2.test loops back to myself"),
])
def test_undeliverable_destinations_bounce(make_instance, dns, rcpt, dsn, text):
    inst = remote_instance(make_instance, dns, 2)
    qid = inst.send(simple_message("bounce me"), rcpts=[rcpt], sender=LOCAL_SENDER)
    assert status_line(inst, qid, rcpt) == ("none", dsn, "bounced", text)


def test_backup_mx_that_is_myself_is_skipped(make_instance, dns, receivers):
    port = free_port_on("127.0.0.6")
    rcv = receivers(Receiver("127.0.0.6", port))
    inst = remote_instance(make_instance, dns, port)
    qid = inst.send(simple_message("backup"), rcpts=["erin@backup.test"])
    relay, dsn, status, _ = status_line(inst, qid, "erin@backup.test")
    assert (relay, status) == (f"real.backup.test[127.0.0.6]:{port}", "sent")
    rcv.wait_messages(1)


def test_more_than_100_mx_records_are_truncated(make_instance, dns, receivers):
    prefs = query_mx_prefs_tcp(dns.port, "big.test")
    assert len(prefs) == BIG_MX and min(prefs[:100]) == 10 and set(prefs[100:]) == {0}
    port = free_port_on("127.0.0.13", "127.0.0.14")
    rcv = receivers(Receiver("127.0.0.13", port))
    inst = remote_instance(make_instance, dns, port)
    qid = inst.send(simple_message("big"), rcpts=["fay@big.test"])
    relay, dsn, status, _ = status_line(inst, qid, "fay@big.test")
    # The best of the first 100 records: preference 10, mx0.
    assert (relay, status) == (f"mx0.big.test[127.0.0.13]:{port}", "sent")
    rcv.wait_messages(1)


def test_servfail_defers_then_delivers_when_dns_answers(make_instance, receivers):
    port = free_port_on("127.0.0.15")
    rcv = receivers(Receiver("127.0.0.15", port))
    dns = DnsServer(servfail=["flaky.test"]).start()
    try:
        inst = remote_instance(make_instance, dns, port)
        qid = inst.send(simple_message("servfail"), rcpts=["gil@flaky.test"])
        assert status_line(inst, qid, "gil@flaky.test") == (
            "none", "4.4.3", "deferred", "Host or domain name not found. Name service error "
            "for name=flaky.test type=MX: Host not found, try again")
        assert dns.servfail_server.queries > 0
        assert rcv.messages == []

        dns.restart(mx=[("flaky.test", "mx.flaky.test", 10)],
                    hosts=[("mx.flaky.test", "127.0.0.15")], servfail=[])
        inst.wait_deferred(qid)
        rc, out = inst.postern("flush")
        assert rc == 0, out
        inst.wait_log(rf"^{qid}: to=<gil@flaky\.test>, relay=mx\.flaky\.test\[127\.0\.0\.15\]"
                      rf":{port}, .*status=sent ", program="smtp")
        assert rcv.wait_messages(1)[0]["rcpt_tos"] == ["gil@flaky.test"]
        inst.wait_queue_empty()
    finally:
        dns.close()


def test_per_recipient_results_in_one_transaction(make_instance, dns, receivers):
    port = free_port_on("127.0.0.5")
    rcv = receivers(Receiver("127.0.0.5", port, rcpt_replies={
        "soft@per.test": "450 4.2.1 Mailbox busy, try later",
        "hard@per.test": "550 5.1.1 No such user here",
    }))
    inst = remote_instance(make_instance, dns, port)
    rcpts = ["ok@per.test", "soft@per.test", "hard@per.test"]
    qid = inst.send(simple_message("mixed"), rcpts=rcpts, sender=LOCAL_SENDER)

    peer = f"mx.per.test[127.0.0.5]"
    assert status_line(inst, qid, "ok@per.test")[1:3] == ("2.0.0", "sent")
    assert status_line(inst, qid, "soft@per.test") == (
        f"{peer}:{port}", "4.2.1", "deferred",
        f"host {peer} said: 450 4.2.1 Mailbox busy, try later (in reply to RCPT TO command)")
    assert status_line(inst, qid, "hard@per.test") == (
        f"{peer}:{port}", "5.1.1", "bounced",
        f"host {peer} said: 550 5.1.1 No such user here (in reply to RCPT TO command)")
    msgs = rcv.wait_messages(1)
    assert [m["rcpt_tos"] for m in msgs] == [["ok@per.test"]]
    assert rcv.connections == 1


def test_size_limit_refused_before_mail(make_instance, dns, receivers):
    port = free_port_on("127.0.0.9")
    rcv = receivers(Receiver("127.0.0.9", port, size_limit=2000))
    inst = remote_instance(make_instance, dns, port)
    qid = inst.send(simple_message("large", body=("y" * 70 + "\n") * 60),
                    rcpts=["hal@size.test"], sender=LOCAL_SENDER)
    relay, dsn, status, text = status_line(inst, qid, "hal@size.test")
    assert (dsn, status) == ("5.3.4", "bounced")
    assert re.fullmatch(r"message size \d+ exceeds size limit 2000 of server "
                        r"mx\.size\.test\[127\.0\.0\.9\]", text), text
    # Small mail on the same connection still goes, with SIZE= announced.
    qid2 = inst.send(simple_message("small"), rcpts=["hal@size.test"])
    assert status_line(inst, qid2, "hal@size.test")[2] == "sent"
    msg = rcv.wait_messages(1)[0]
    assert any(o.startswith("SIZE=") for o in msg["mail_options"])
    assert len(rcv.messages) == 1


def test_8bitmime_announced_only_for_8bit_content(make_instance, dns, receivers):
    port = free_port_on("127.0.0.10")
    rcv = receivers(Receiver("127.0.0.10", port))
    inst = remote_instance(make_instance, dns, port)
    q1 = inst.send(simple_message("plain", body="just ascii\n"), rcpts=["ivy@eight.test"])
    status_line(inst, q1, "ivy@eight.test")
    q2 = inst.send(simple_message("eight", body="gr\u00fc\u00dfe\n").encode("utf-8"),
                   rcpts=["ivy@eight.test"], mail_options=["BODY=8BITMIME"])
    status_line(inst, q2, "ivy@eight.test")
    plain, eight = rcv.wait_messages(2)
    assert "BODY=8BITMIME" not in plain["mail_options"]
    assert "BODY=8BITMIME" in eight["mail_options"]
    assert "gr\u00fc\u00dfe".encode() in eight["data"]


def test_pipelining_to_smtp_sink(make_instance, dns, receivers, tmp_path):
    port = free_port_on("127.0.0.11")
    sink = receivers(SmtpSink("127.0.0.11", port, dump_dir=tmp_path))
    inst = remote_instance(make_instance, dns, port)
    body = "line one\n.leading dot\n..two dots\nlast\n"
    qid = inst.send(simple_message("sink", test_id="sinkmsg", body=body),
                    rcpts=["jo@sink.test", "kim@sink.test"])
    for rcpt in ("jo@sink.test", "kim@sink.test"):
        relay, dsn, status, _ = status_line(inst, qid, rcpt)
        assert (relay, status) == (f"mx.sink.test[127.0.0.11]:{port}", "sent")
    dumped = wait_until(sink.dumped, 10, what="smtp-sink dump file")
    data = dumped[0].read_bytes()
    assert b"X-Test-Id: sinkmsg" in data
    # Dot-stuffing undone by the receiver: the content arrives unchanged.
    assert b"\n.leading dot\n..two dots\n" in data.replace(b"\r\n", b"\n")


def test_relayhost_with_brackets_skips_mx(make_instance, dns, receivers):
    port = free_port_on("127.0.0.2")
    rcv = receivers(Receiver("127.0.0.2", port))
    inst = make_instance(extra_main=[f"dns_servers = {dns.servers}",
                                     f"relayhost = [127.0.0.2]:{port}"])
    qid = inst.send(simple_message("relayhost"), rcpts=["lee@example.com"])
    relay, dsn, status, _ = status_line(inst, qid, "lee@example.com")
    assert (relay, status) == (f"127.0.0.2[127.0.0.2]:{port}", "sent")
    assert rcv.wait_messages(1)[0]["rcpt_tos"] == ["lee@example.com"]


def test_relayhost_without_brackets_looks_up_mx(make_instance, dns, receivers):
    port = free_port_on("127.0.0.12")
    rcv = receivers(Receiver("127.0.0.12", port))
    inst = make_instance(extra_main=[f"dns_servers = {dns.servers}",
                                     f"relayhost = relay.test:{port}"])
    qid = inst.send(simple_message("relayhost mx"), rcpts=["mo@example.net"])
    relay, dsn, status, _ = status_line(inst, qid, "mo@example.net")
    assert (relay, status) == (f"mx.relay.test[127.0.0.12]:{port}", "sent")
    rcv.wait_messages(1)


def test_transport_maps_route_per_domain(make_instance, dns, receivers):
    port = free_port_on("127.0.0.3")
    rcv = receivers(Receiver("127.0.0.3", port))
    maps = ("inline:{ routed.example=smtp:[127.0.0.3]:%d, "
            "{ blocked.example = error:5.7.1 no mail for you } }" % port)
    inst = make_instance(extra_main=[f"dns_servers = {dns.servers}", f"transport_maps = {maps}"])
    qid = inst.send(simple_message("maps"), rcpts=["ned@routed.example"])
    relay, dsn, status, _ = status_line(inst, qid, "ned@routed.example")
    assert (relay, status) == (f"127.0.0.3[127.0.0.3]:{port}", "sent")
    assert rcv.wait_messages(1)[0]["rcpt_tos"] == ["ned@routed.example"]


def test_relay_domains_go_through_the_relay_service(make_instance, dns, receivers):
    port = free_port_on("127.0.0.12")
    rcv = receivers(Receiver("127.0.0.12", port))
    inst = remote_instance(make_instance, dns, port, "relay_domains = relay.test")
    qid = inst.send(simple_message("relay domain"), rcpts=["ray@relay.test"])
    relay, dsn, status, _ = status_line(inst, qid, "ray@relay.test")
    assert (relay, status) == (f"mx.relay.test[127.0.0.12]:{port}", "sent")
    rcv.wait_messages(1)
    services = [argv[argv.index("-n") + 1] for pid, argv in process_table()
                if pid in inst.pids("remote") and "-n" in argv]
    assert services == ["relay"]


def test_delivery_to_another_postern(make_instance, dns):
    port = free_port_on("127.0.0.7")
    peer = make_instance(start=False, extra_main=["mydestination = p2.test, localhost"])
    peer.port = port
    peer.write_master_cf()
    text = (peer.etc / "master.cf").read_text().replace(
        f"127.0.0.1:{peer.port}", f"127.0.0.7:{port}", 1)
    (peer.etc / "master.cf").write_text(text)
    peer.start(wait=False)
    wait_port(port, 15, host="127.0.0.7")

    inst = remote_instance(make_instance, dns, port)
    qid = inst.send(simple_message("to peer", test_id="topeer"), rcpts=["olga@p2.test"])
    relay, dsn, status, text = status_line(inst, qid, "olga@p2.test")
    assert (relay, status) == (f"mx.p2.test[127.0.0.7]:{port}", "sent")
    assert re.fullmatch(r"250 2\.0\.0 Ok: queued as \w+", text), text
    data = peer.wait_delivered("olga")[0].read_bytes()
    assert b"X-Test-Id: topeer" in data
    assert f"by {HOSTNAME} (Postern)".encode() in data


def test_thousand_messages_reuse_a_handful_of_connections(make_instance, dns, receivers):
    port = free_port_on("127.0.0.8")
    rcv = receivers(Receiver("127.0.0.8", port))
    inst = remote_instance(make_instance, dns, port)
    count = 1000
    started = time.monotonic()
    proc = subprocess.run(["smtp-source", "-m", str(count), "-s", "10", "-f", SENDER,
                           "-t", "pat@reuse.test", "-M", "source.example",
                           f"127.0.0.1:{inst.port}"], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rcv.wait_messages(count, timeout=90)
    elapsed = time.monotonic() - started
    inst.wait_queue_empty(30)
    assert len(inst.find_log(r"^\w+: to=<pat@reuse\.test>, .*status=sent ", program="smtp")) \
        == count
    print(f"{count} messages in {elapsed:.1f}s over {rcv.connections} connections")
    assert rcv.connections <= 25, rcv.connections


def test_large_message_arrives_intact(make_instance, dns, receivers):
    port = free_port_on("127.0.0.2")
    rcv = receivers(Receiver("127.0.0.2", port))
    inst = make_instance(extra_main=[f"dns_servers = {dns.servers}",
                                     f"relayhost = [127.0.0.2]:{port}"])
    # 3 MB in lines of varying length, some starting with dots, so that the
    # content crosses many 64 KB chunks and output refills.
    lines = [("." if n % 7 == 0 else "") + f"{n:07d} " + "abcdefghij" * (n % 13)
             for n in range(60000)]
    body = "\n".join(lines) + "\n"
    qid = inst.send(simple_message("large", test_id="large", body=body),
                    rcpts=["quinn@example.com"])
    assert status_line(inst, qid, "quinn@example.com", timeout=60)[2] == "sent"
    data = rcv.wait_messages(1)[0]["data"].replace(b"\r\n", b"\n")
    assert data.endswith(body.encode())
    assert b"X-Test-Id: large" in data
