"""STARTTLS in remote, per smtp_tls_security_level, against aiosmtpd
receivers with certificates from a throw-away CA:

may      a TLS-capable receiver gets the mail over TLS, and the log says so
encrypt  a receiver without STARTTLS gets nothing: the mail is deferred,
         never sent in clear
verify   a certificate that does not chain to smtp_tls_CAfile: deferred;
         the right CA and a matching name: sent
"""

import re

import pytest

from dnsmasq_fixture import DnsServer
from postern_instance import simple_message
from smtp_peers import Receiver, free_port_on, make_cert

TLS_HOST = "mx.tls.test"
PLAIN_HOST = "mx.plain.test"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    good = make_cert(tmp_path_factory.mktemp("good"), TLS_HOST)
    other = make_cert(tmp_path_factory.mktemp("other"), TLS_HOST)
    return {"good": good, "other_ca": other[0]}


@pytest.fixture(scope="module")
def dns():
    server = DnsServer(mx=[("tls.test", TLS_HOST, 10), ("plain.test", PLAIN_HOST, 10)],
                       hosts=[(TLS_HOST, "127.0.0.20"), (PLAIN_HOST, "127.0.0.21")]).start()
    yield server
    server.close()


@pytest.fixture
def receiver():
    made = []

    def start(*args, **kwargs):
        r = Receiver(*args, **kwargs).start()
        made.append(r)
        return r

    yield start
    for r in made:
        r.stop()


def tls_instance(make_instance, dns, port, level, *extra):
    return make_instance(extra_main=[f"dns_servers = {dns.servers}", f"smtp_tcp_port = {port}",
                                     f"smtp_tls_security_level = {level}",
                                     "smtp_tls_loglevel = 1", *extra])


def delivery(inst, qid, rcpt):
    rx = rf"^{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), .*dsn=(\S+), status=(\w+) \((.*)\)$"
    line = inst.wait_log(rx, program="smtp")[0]
    return re.match(rx, line.text).groups()


def test_may_uses_tls_when_offered(make_instance, dns, certs, receiver):
    port = free_port_on("127.0.0.20")
    rcv = receiver("127.0.0.20", port, tls=certs["good"][1:])
    inst = tls_instance(make_instance, dns, port, "may")
    qid = inst.send(simple_message("tls may"), rcpts=["amy@tls.test"])
    assert delivery(inst, qid, "amy@tls.test")[1:3] == ("2.0.0", "sent")
    msg = rcv.wait_messages(1)[0]
    assert msg["tls"] is True
    assert inst.find_log(rf"^Untrusted TLS connection established to "
                         rf"{re.escape(TLS_HOST)}\[127\.0\.0\.20\]:{port}: TLSv1\.[23] with cipher ",
                         program="smtp")


def test_may_without_starttls_sends_in_clear(make_instance, dns, receiver):
    port = free_port_on("127.0.0.21")
    rcv = receiver("127.0.0.21", port)
    inst = tls_instance(make_instance, dns, port, "may")
    qid = inst.send(simple_message("tls may plain"), rcpts=["bea@plain.test"])
    assert delivery(inst, qid, "bea@plain.test")[2] == "sent"
    assert rcv.wait_messages(1)[0]["tls"] is False


def test_encrypt_never_sends_in_clear(make_instance, dns, receiver):
    port = free_port_on("127.0.0.21")
    rcv = receiver("127.0.0.21", port)
    inst = tls_instance(make_instance, dns, port, "encrypt")
    qid = inst.send(simple_message("tls encrypt"), rcpts=["cy@plain.test"])
    relay, dsn, status, text = delivery(inst, qid, "cy@plain.test")
    assert (dsn, status) == ("4.7.4", "deferred")
    assert text == f"TLS is required, but was not offered by host {PLAIN_HOST}[127.0.0.21]"
    assert rcv.connections >= 1   # it did talk to the server...
    assert rcv.messages == []     # ...but sent it nothing


def test_encrypt_with_starttls_delivers(make_instance, dns, certs, receiver):
    port = free_port_on("127.0.0.20")
    rcv = receiver("127.0.0.20", port, tls=certs["good"][1:])
    inst = tls_instance(make_instance, dns, port, "encrypt")
    qid = inst.send(simple_message("tls encrypt ok"), rcpts=["dee@tls.test"])
    assert delivery(inst, qid, "dee@tls.test")[2] == "sent"
    assert rcv.wait_messages(1)[0]["tls"] is True


def test_verify_with_wrong_ca_defers(make_instance, dns, certs, receiver):
    port = free_port_on("127.0.0.20")
    rcv = receiver("127.0.0.20", port, tls=certs["good"][1:])
    inst = tls_instance(make_instance, dns, port, "verify",
                        f"smtp_tls_CAfile = {certs['other_ca']}")
    qid = inst.send(simple_message("tls verify bad"), rcpts=["eve@tls.test"])
    relay, dsn, status, text = delivery(inst, qid, "eve@tls.test")
    assert (dsn, status) == ("4.7.5", "deferred")
    assert text == "Server certificate not verified"
    assert inst.find_log(rf"^certificate verification failed for {re.escape(TLS_HOST)}"
                         rf"\[127\.0\.0\.20\]:{port}: untrusted issuer /CN=Postern test CA ",
                         program="smtp")
    assert rcv.messages == []


def test_verify_with_right_ca_delivers(make_instance, dns, certs, receiver):
    port = free_port_on("127.0.0.20")
    rcv = receiver("127.0.0.20", port, tls=certs["good"][1:])
    inst = tls_instance(make_instance, dns, port, "verify",
                        f"smtp_tls_CAfile = {certs['good'][0]}")
    qid = inst.send(simple_message("tls verify good"), rcpts=["fox@tls.test"])
    assert delivery(inst, qid, "fox@tls.test")[2] == "sent"
    assert rcv.wait_messages(1)[0]["tls"] is True
    assert inst.find_log(rf"^Verified TLS connection established to {re.escape(TLS_HOST)}",
                         program="smtp")


def test_verify_matches_ip_literal_nexthop_against_ip_san(make_instance, dns, receiver,
                                                          tmp_path):
    """[127.0.0.20]:port as relayhost: the certificate names the address in
    an IP subjectAltName (and no DNS name), which verify accepts as Postfix
    does; a certificate for another address is refused."""
    port = free_port_on("127.0.0.20")
    ca, crt, key = make_cert(tmp_path / "ip", "127.0.0.20", san="IP:127.0.0.20")
    rcv = receiver("127.0.0.20", port, tls=(crt, key))
    inst = tls_instance(make_instance, dns, port, "verify", f"smtp_tls_CAfile = {ca}",
                        f"relayhost = [127.0.0.20]:{port}")
    qid = inst.send(simple_message("tls verify ip"), rcpts=["gil@tls.test"])
    assert delivery(inst, qid, "gil@tls.test")[2] == "sent"
    assert rcv.wait_messages(1)[0]["tls"] is True

    port2 = free_port_on("127.0.0.20")
    ca2, crt2, key2 = make_cert(tmp_path / "other-ip", "127.0.0.99", san="IP:127.0.0.99")
    rcv2 = receiver("127.0.0.20", port2, tls=(crt2, key2))
    inst2 = tls_instance(make_instance, dns, port2, "verify", f"smtp_tls_CAfile = {ca2}",
                         f"relayhost = [127.0.0.20]:{port2}")
    qid2 = inst2.send(simple_message("tls verify wrong ip"), rcpts=["hal@tls.test"])
    relay, dsn, status, text = delivery(inst2, qid2, "hal@tls.test")
    assert (dsn, status) == ("4.7.5", "deferred"), text
    assert rcv2.messages == []
