"""DANE (RFC 7672) in remote, with smtp_dns_support_level = dnssec and a
validating unbound of the test's own (unbound_fixture.py) over zones
signed at test time:

dane.test    signed and anchored: TLSA records that match (DANE-EE(3)
             SPKI SHA2-256, SHA2-512 and full certificate; DANE-TA(2) over
             the issuing CA) deliver with "Verified TLS connection
             established"; a record that does not match defers ("num=65:no
             matching DANE TLSA records", "Server certificate not
             verified"); no TLSA: "dane" sends opportunistically,
             "dane-only" defers
bogus.test   signed, but its TLSA record altered after signing: the
             resolver says SERVFAIL, the record is never trusted, the
             server is skipped ("TLSA lookup error")
plain.test   not signed (insecure): its TLSA record is ignored, "dane"
             falls back to opportunistic TLS, "dane-only" defers
"""

import hashlib
import re
import subprocess

import pytest

from postern_instance import simple_message
from smtp_peers import Receiver, free_port_on, make_cert
from tables_fixture import cdb_table
from unbound_fixture import ValidatingResolver, Zone

SERVERS = {"ee": "127.0.0.61", "bad": "127.0.0.62", "ta": "127.0.0.63", "full": "127.0.0.64",
           "512": "127.0.0.65", "none": "127.0.0.66", "bogus": "127.0.0.67",
           "plain": "127.0.0.68"}


def der(args, path):
    return subprocess.run(["openssl", *args, "-in", path, "-outform", "DER"], check=True,
                          capture_output=True, timeout=60).stdout


def spki(cert):
    pem = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"], check=True,
                         capture_output=True, timeout=60).stdout
    return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pem,
                          check=True, capture_output=True, timeout=60).stdout


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("dane")
    port = free_port_on(*SERVERS.values())
    certs = {}
    for name in SERVERS:
        host = f"mx-{name}.dane.test" if name not in ("bogus", "plain") \
            else f"mx.{name}.test"
        certs[name] = make_cert(base / name, host)
    # DANE-TA: the server sends its CA too, and the record names the CA.
    ta_chain = base / "ta" / "chain.crt"
    ta_chain.write_text(open(certs["ta"][1]).read() + open(certs["ta"][0]).read())
    other = make_cert(base / "other", "other.dane.test")

    ee = hashlib.sha256(spki(certs["ee"][1])).hexdigest()
    tlsa = {
        "ee": f"3 1 1 {ee}",
        "bad": f"3 1 1 {hashlib.sha256(spki(other[1])).hexdigest()}",
        "ta": f"2 0 1 {hashlib.sha256(der(['x509'], certs['ta'][0])).hexdigest()}",
        "full": f"3 0 0 {der(['x509'], certs['full'][1]).hex()}",
        "512": f"3 1 2 {hashlib.sha512(spki(certs['512'][1])).hexdigest()}",
    }
    dane = []
    for name, addr in SERVERS.items():
        if name in ("bogus", "plain"):
            continue
        dane += [f"mx-{name} A {addr}", f"{name} MX 10 mx-{name}"]
        if name in tlsa:
            dane.append(f"_{port}._tcp.mx-{name} TLSA {tlsa[name]}")
    dane.append("none-only MX 10 mx-none")
    bogus_hash = hashlib.sha256(spki(certs["bogus"][1])).hexdigest()
    altered = ("0" if bogus_hash[0] != "0" else "1") + bogus_hash[1:]
    zones = [
        Zone("dane.test", dane),
        Zone("bogus.test", ["@ MX 10 mx", f"mx A {SERVERS['bogus']}",
                            f"_{port}._tcp.mx TLSA 3 1 1 {bogus_hash}"],
             tamper=lambda text: text.replace(bogus_hash, altered)),
        Zone("plain.test", ["@ MX 10 mx", "only MX 10 mx", f"mx A {SERVERS['plain']}",
                            f"_{port}._tcp.mx TLSA 3 1 1 {ee}"], signed=False),
    ]
    resolver = ValidatingResolver(zones, base / "unbound").start()
    receivers = {}
    try:
        for name, addr in SERVERS.items():
            cert = (str(ta_chain), certs["ta"][2]) if name == "ta" else certs[name][1:]
            receivers[name] = Receiver(addr, port, tls=cert).start()
        yield {"port": port, "dns": resolver, "receivers": receivers}
    finally:
        for r in receivers.values():
            r.stop()
        resolver.close()


@pytest.fixture(scope="module")
def instance(setup, tmp_path_factory):
    from postern_instance import Instance, free_port
    inst = Instance(free_port())
    policy = cdb_table(inst, "tls_policy", ["none-only.dane.test dane-only",
                                            "only.plain.test dane-only"])
    inst.append_main_cf(f"dns_servers = {setup['dns'].servers}", f"smtp_tcp_port = {setup['port']}",
                        "smtp_dns_support_level = dnssec", "smtp_tls_security_level = dane",
                        f"smtp_tls_policy_maps = {policy}", "smtp_tls_loglevel = 1")
    inst.start()
    yield inst
    print(inst.log_tail(80))
    inst.cleanup()


def delivery(inst, qid, rcpt, timeout=30):
    rx = rf"^{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), .*dsn=(\S+), status=(\w+) \((.*)\)$"
    line = inst.wait_log(rx, program="smtp", timeout=timeout)[0]
    return re.match(rx, line.text).groups()


def relay(setup, name):
    host = f"mx-{name}.dane.test" if name not in ("bogus", "plain") else f"mx.{name}.test"
    return f"{host}[{SERVERS[name]}]:{setup['port']}"


@pytest.mark.parametrize("name", ["ee", "ta", "full", "512"])
def test_matching_tlsa_verified(setup, instance, name):
    qid = instance.send(simple_message(f"dane {name}"), rcpts=[f"u@{name}.dane.test"])
    rl, dsn, status, text = delivery(instance, qid, f"u@{name}.dane.test")
    assert (rl, status) == (relay(setup, name), "sent"), text
    assert instance.find_log(rf"^Verified TLS connection established to "
                             rf"{re.escape(relay(setup, name))}: TLSv1\.[23] ", program="smtp")
    assert setup["receivers"][name].wait_messages(1)[0]["tls"]


def test_mismatching_tlsa_deferred(setup, instance):
    qid = instance.send(simple_message("dane bad"), rcpts=["u@bad.dane.test"])
    rl, dsn, status, text = delivery(instance, qid, "u@bad.dane.test")
    assert (dsn, status, text) == ("4.7.5", "deferred", "Server certificate not verified")
    assert instance.find_log(rf"^server certificate verification failed for "
                             rf"{re.escape(relay(setup, 'bad'))}: num=65:no matching DANE TLSA "
                             r"records$", program="smtp")
    assert setup["receivers"]["bad"].messages == []


def test_no_tlsa_dane_sends_dane_only_defers(setup, instance):
    q1 = instance.send(simple_message("no tlsa"), rcpts=["u@none.dane.test"])
    q2 = instance.send(simple_message("no tlsa only"), rcpts=["u@none-only.dane.test"])
    assert delivery(instance, q1, "u@none.dane.test")[2] == "sent"
    rl, dsn, status, text = delivery(instance, q2, "u@none-only.dane.test")
    assert (dsn, status) == ("4.7.5", "deferred")
    assert text == f"no usable TLSA records for mx-none.dane.test:{setup['port']}"
    assert len(setup["receivers"]["none"].wait_messages(1)) == 1


def test_bogus_signature_not_trusted(setup, instance):
    qid = instance.send(simple_message("bogus"), rcpts=["u@bogus.test"])
    rl, dsn, status, text = delivery(instance, qid, "u@bogus.test")
    assert (dsn, status, text) == ("4.7.5", "deferred",
                                   f"TLSA lookup error for mx.bogus.test:{setup['port']}")
    assert setup["receivers"]["bogus"].messages == []


def test_insecure_zone_tlsa_ignored(setup, instance):
    q1 = instance.send(simple_message("insecure dane"), rcpts=["u@plain.test"])
    q2 = instance.send(simple_message("insecure dane-only"), rcpts=["u@only.plain.test"])
    assert delivery(instance, q1, "u@plain.test")[2] == "sent"
    assert instance.find_log(rf"^Untrusted TLS connection established to "
                             rf"{re.escape(relay(setup, 'plain'))}: ", program="smtp")
    rl, dsn, status, text = delivery(instance, q2, "u@only.plain.test")
    assert (dsn, status) == ("4.7.5", "deferred")
    assert text == (f"no usable DNSSEC-validated TLSA records for mx.plain.test:"
                    f"{setup['port']}")
