"""smtp_tls_policy_maps and the smtp_tls_* settings against aiosmtpd
receivers with three certificates: a good one (the MX host name, from the
CA in smtp_tls_CAfile), one for another name from the same CA, and a
self-signed one. Every level decides and logs as Postfix 3.7 does at
smtp_tls_loglevel = 1 (compared with a private Postfix instance):

none      sent in clear
may       sent over TLS: "Trusted" when the chain verifies (names are not
          asked at this level), "Untrusted" for the self-signed one
encrypt   the same, TLS mandatory
verify    the MX host name must match: the good one "Verified"; the wrong
          name "server certificate verification failed for H[A]:P:
          num=62:hostname mismatch"; the self-signed one "certificate
          verification failed for H[A]:P: self-signed certificate"; both
          deferred 4.7.5 "Server certificate not verified"
secure    the nexthop or a subdomain of it must match

and the attributes: match=, protocols=, ciphers=/exclude=, servername=;
smtp_tls_CApath (a hashed directory, loaded lazily), a client
certificate, SNI (smtp_tls_servername), session resumption across
connections, a policy entry that does not parse (deferred, never sent
weaker), smtp_tls_loglevel = 0 (silent).
"""

import re
import shutil
import subprocess

import pytest

from dnsmasq_fixture import DnsServer
from postern_instance import simple_message
from smtp_peers import Receiver, free_port_on, make_cert, make_self_signed
from tables_fixture import cdb_table

HOSTS = {"good": ("mx.good.test", "127.0.0.51"), "wrong": ("mx.wrong.test", "127.0.0.52"),
         "self": ("mx.self.test", "127.0.0.53")}
LEVELS = ("none", "may", "encrypt", "verify", "secure")
# (status, trust word in the log, verification failure text) per level and certificate
EXPECT = {
    ("none", "good"): ("sent", None, None), ("none", "wrong"): ("sent", None, None),
    ("none", "self"): ("sent", None, None),
    ("may", "good"): ("sent", "Trusted", None), ("may", "wrong"): ("sent", "Trusted", None),
    ("may", "self"): ("sent", "Untrusted", None),
    ("encrypt", "good"): ("sent", "Trusted", None), ("encrypt", "wrong"): ("sent", "Trusted", None),
    ("encrypt", "self"): ("sent", "Untrusted", None),
    ("verify", "good"): ("sent", "Verified", None),
    ("verify", "wrong"): ("deferred", "Untrusted", "server certificate verification failed for "
                          "{relay}: num=62:hostname mismatch"),
    ("verify", "self"): ("deferred", "Untrusted", "certificate verification failed for "
                         "{relay}: self-signed certificate"),
    ("secure", "good"): ("sent", "Verified", None),
    ("secure", "wrong"): ("deferred", "Untrusted", "server certificate verification failed for "
                          "{relay}: num=62:hostname mismatch"),
    ("secure", "self"): ("deferred", "Untrusted", "certificate verification failed for "
                         "{relay}: self-signed certificate"),
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    base = tmp_path_factory.mktemp("policy")
    ca, good_crt, good_key = make_cert(base / "good", "mx.good.test")
    # Another name, the same CA: sign a second server certificate with it.
    d = base / "wrong"
    d.mkdir()
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=other.name.test", "-keyout", str(d / "k"), "-out", str(d / "csr")],
                   check=True, capture_output=True, timeout=60)
    (d / "ext").write_text("subjectAltName = DNS:other.name.test\n")
    subprocess.run(["openssl", "x509", "-req", "-in", str(d / "csr"), "-CA", ca, "-CAkey",
                    str(base / "good" / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile",
                    str(d / "ext"), "-out", str(d / "crt")], check=True, capture_output=True,
                   timeout=60)
    self_crt, self_key = make_self_signed(base / "self", "mx.self.test")
    capath = base / "capath"
    capath.mkdir()
    shutil.copy(ca, capath / "ca.pem")
    subprocess.run(["openssl", "rehash", str(capath)], check=True, capture_output=True,
                   timeout=60)
    client = make_cert(base / "client", "client.postern.test")
    return {"ca": ca, "capath": str(capath), "good": (good_crt, good_key),
            "wrong": (str(d / "crt"), str(d / "k")), "self": (self_crt, self_key),
            "client": client}


def domain(kind, level):
    # secure matches the nexthop domain: mx.good.test is good.test's.
    return f"{kind}.test" if level == "secure" else f"{kind}-{level}.test"


@pytest.fixture(scope="module")
def dns():
    mx = [(domain(k, lv), HOSTS[k][0], 10) for k in HOSTS for lv in LEVELS + ("attr",)]
    server = DnsServer(mx=mx, hosts=list(HOSTS.values())).start()
    yield server
    server.close()


@pytest.fixture
def receivers(certs):
    made = {}
    port = free_port_on(*[addr for _, addr in HOSTS.values()])
    for kind, (name, addr) in HOSTS.items():
        made[kind] = Receiver(addr, port, tls=certs[kind], client_ca=certs["client"][0]).start()
    yield made
    for r in made.values():
        r.stop()


def policy_instance(make_instance, dns, port, policy_lines, *extra):
    inst = make_instance(start=False)
    policy = cdb_table(inst, "tls_policy", policy_lines)
    inst.append_main_cf(f"dns_servers = {dns.servers}", f"smtp_tcp_port = {port}",
                        f"smtp_tls_policy_maps = {policy}", "smtp_tls_loglevel = 1", *extra)
    inst.start()
    return inst


def delivery(inst, qid, rcpt, timeout=30):
    rx = rf"^{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), .*dsn=(\S+), status=(\w+) \((.*)\)$"
    line = inst.wait_log(rx, program="smtp", timeout=timeout)[0]
    return re.match(rx, line.text).groups()


def test_each_level_against_each_certificate(make_instance, dns, certs, receivers):
    port = receivers["good"].port
    lines = [f"{domain(k, lv)} {lv}" for k in HOSTS for lv in LEVELS]
    inst = policy_instance(make_instance, dns, port, lines, f"smtp_tls_CAfile = {certs['ca']}")
    qids = {}
    for kind in HOSTS:
        for level in LEVELS:
            qids[level, kind] = inst.send(simple_message(f"{level} {kind}"),
                                          rcpts=[f"u@{domain(kind, level)}"])
    for (level, kind), qid in qids.items():
        status, trust, failure = EXPECT[level, kind]
        relay, dsn, got, text = delivery(inst, qid, f"u@{domain(kind, level)}")
        assert got == status, (level, kind, text)
        if status == "deferred":
            assert (dsn, text) == ("4.7.5", "Server certificate not verified"), (level, kind)
        name, addr = HOSTS[kind]
        if failure is not None:
            relay_text = f"{name}[{addr}]:{port}"
            assert inst.find_log("^" + re.escape(failure.format(relay=relay_text)) + "$",
                                 program="smtp"), (level, kind)
    for kind, rcv in receivers.items():
        got = {m["data"].split(b"Subject: ")[1].split(b"\r\n")[0].decode(): m
               for m in rcv.messages}
        for level in LEVELS:
            status = EXPECT[level, kind][0]
            msg = got.get(f"{level} {kind}")
            assert (msg is not None) == (status == "sent"), (level, kind)
            if msg is not None:
                assert msg["tls"] == (level != "none"), (level, kind)
    # Each trust word appears as Postfix words it, for each server.
    for kind, (name, addr) in HOSTS.items():
        words = {EXPECT[lv, kind][1] for lv in LEVELS} - {None}
        for word in words:
            assert inst.find_log(rf"^{word} TLS connection established to {re.escape(name)}"
                                 rf"\[{re.escape(addr)}\]:{port}: TLSv1\.[23] with cipher \S+ "
                                 r"\(\d+/\d+ bits\) key-exchange \S+ server-signature RSA",
                                 program="smtp"), (kind, word)


def test_attributes(make_instance, dns, certs, receivers):
    port = receivers["good"].port
    lines = ["good-attr.test secure match=mx.good.test protocols=TLSv1.2 exclude=AESGCM "
             "servername=sni.example",
             "wrong-attr.test verify match=other.name.test:nosuch.test",
             "self-attr.test verify match=nosuch.test"]
    inst = policy_instance(make_instance, dns, port, lines, f"smtp_tls_CAfile = {certs['ca']}")
    q_good = inst.send(simple_message("attr good"), rcpts=["u@good-attr.test"])
    q_wrong = inst.send(simple_message("attr wrong"), rcpts=["u@wrong-attr.test"])
    q_self = inst.send(simple_message("attr self"), rcpts=["u@self-attr.test"])
    assert delivery(inst, q_good, "u@good-attr.test")[2] == "sent"
    assert delivery(inst, q_wrong, "u@wrong-attr.test")[2] == "sent"
    assert delivery(inst, q_self, "u@self-attr.test")[2] == "deferred"
    msg = receivers["good"].wait_messages(1)[0]
    assert msg["tls_version"] == "TLSv1.2" and "GCM" not in msg["cipher"], msg["cipher"]
    assert receivers["good"].sni_names == ["sni.example"]
    assert receivers["wrong"].wait_messages(1)


def test_capath_client_certificate_and_sni(make_instance, dns, certs, receivers):
    port = receivers["good"].port
    cert, key = certs["client"][1:]
    inst = policy_instance(make_instance, dns, port, ["good-verify.test verify"],
                           f"smtp_tls_CApath = {certs['capath']}", f"smtp_tls_cert_file = {cert}",
                           f"smtp_tls_key_file = {key}", "smtp_tls_servername = hostname")
    qid = inst.send(simple_message("capath"), rcpts=["u@good-verify.test"])
    relay, dsn, status, text = delivery(inst, qid, "u@good-verify.test")
    assert status == "sent", text
    assert inst.find_log(r"^Verified TLS connection established to mx\.good\.test", program="smtp")
    msg = receivers["good"].wait_messages(1)[0]
    assert msg["client_cn"] == "client.postern.test"
    assert receivers["good"].sni_names == ["mx.good.test"]


def test_no_sni_by_default_and_sessions_resumed(make_instance, dns, certs, receivers):
    port = receivers["good"].port
    inst = policy_instance(make_instance, dns, port, ["good-may.test may"],
                           f"smtp_tls_CAfile = {certs['ca']}", "smtp_tls_loglevel = 2",
                           "smtp_connection_cache_time_limit = 0")
    for i in range(3):
        qid = inst.send(simple_message(f"resume {i}"), rcpts=["u@good-may.test"])
        assert delivery(inst, qid, "u@good-may.test")[2] == "sent"
    msgs = receivers["good"].wait_messages(3)
    assert [m["tls_resumed"] for m in msgs] == [False, True, True]
    assert receivers["good"].sni_names in ([], [None, None, None])
    assert inst.find_log(rf"^mx\.good\.test\[127\.0\.0\.51\]:{port}: Reusing old session$",
                         program="smtp")


def test_bad_policy_entry_defers(make_instance, dns, certs, receivers):
    port = receivers["good"].port
    inst = policy_instance(make_instance, dns, port, ["good-may.test sometimes",
                                                      "good-encrypt.test encrypt colour=blue"])
    q1 = inst.send(simple_message("bad level"), rcpts=["u@good-may.test"])
    q2 = inst.send(simple_message("bad attr"), rcpts=["u@good-encrypt.test"])
    for qid, rcpt in ((q1, "u@good-may.test"), (q2, "u@good-encrypt.test")):
        relay, dsn, status, text = delivery(inst, qid, rcpt)
        assert (dsn, status, text) == ("4.7.5", "deferred", "client TLS configuration problem")
    assert inst.find_log(r"^warning: smtp_tls_policy_maps: entry for good-may\.test: "
                         r'invalid security level "sometimes"$', program="smtp")
    assert receivers["good"].messages == []


def test_loglevel_zero_is_silent(make_instance, dns, certs, receivers):
    port = receivers["good"].port
    inst = policy_instance(make_instance, dns, port, ["good-verify.test verify"],
                           f"smtp_tls_CAfile = {certs['ca']}", "smtp_tls_loglevel = 0")
    qid = inst.send(simple_message("quiet"), rcpts=["u@good-verify.test"])
    assert delivery(inst, qid, "u@good-verify.test")[2] == "sent"
    assert not inst.find_log("TLS connection established", program="smtp")
