"""The "fingerprint" TLS security level (smtp_tls_fingerprint_digest,
smtp_tls_fingerprint_cert_match, match= fingerprints of the certificate or
of its public key) and trust-anchor files (smtp_tls_trust_anchor_file,
the tafile= policy attribute) for verify and secure, each checked against
Debian's Postfix: the same main.cf lines, the same texthash: policy and
transport tables, the same aiosmtpd receivers (one address per case, all
with one certificate for mx.good.test from the CA in smtp_tls_CAfile).
For every case both MTAs must log the same warnings, the same verification
failure, the same trust word and the same delivery status:

fp-cert     fingerprint of the certificate: sent, Verified
fp-pkey     fingerprint of the public key: sent, Verified
fp-two      "AA:BB|<key>": the short one warned "unusable TLSA RR", sent
fp-multi    two match= attributes (a short one, the certificate's): sent
fp-wrong    a 32-byte fingerprint of nothing: deferred, "num=65:no
            matching DANE TLSA records"
fp-none     only unusable fingerprints: "all fingerprints unusable",
            deferred "num=1:unspecified certificate verification error"
fp-main     no match=: smtp_tls_fingerprint_cert_match (comma and space
            separated, two unusable): sent
ta-ca       verify, tafile= the CA certificate: sent, Verified
ta-pub      secure, tafile= the CA's public key alone: sent, Verified
ta-other    verify, tafile= another CA: deferred, num=65 (the CAfile that
            would verify it is no longer asked)
ta-name     verify, tafile= the CA, match= another name: deferred,
            "num=62:hostname mismatch"
ta-main     verify, no tafile=: smtp_tls_trust_anchor_file (another CA):
            deferred, num=65
ta-missing  tafile= a file that does not exist, ta-empty one with no
            certificate or key: deferred "client TLS configuration
            problem" before any connection, warned as Postfix warns

and all of it again with smtp_tls_fingerprint_digest = sha1, where the
SHA-256 fingerprints are unusable and a SHA-1 one pins the certificate.
"""

import hashlib
import subprocess

import pytest

from postern_instance import simple_message
from postfix_reference import PostfixInstance, readable_tmpdir, wait_tls_outcomes
from smtp_peers import Receiver, free_port_on, make_cert

ADDR = {case: f"127.0.0.{90 + i}" for i, case in enumerate(
    ("fp-cert", "fp-pkey", "fp-two", "fp-multi", "fp-wrong", "fp-none", "fp-main",
     "ta-ca", "ta-pub", "ta-other", "ta-name", "ta-main", "ta-missing", "ta-empty"))}
RCPT = {case: f"u@{case}.test" for case in ADDR}
# Trust-anchor files that cannot be used: deferred before any connection.
UNUSABLE = {"ta-missing", "ta-empty"}
SENT = {"fp-cert", "fp-pkey", "fp-two", "fp-multi", "fp-main", "ta-ca", "ta-pub"}


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True,
                          timeout=60).stdout


def colon_hex(digest):
    return ":".join(f"{b:02X}" for b in digest)


@pytest.fixture(scope="module")
def setup():
    with readable_tmpdir("pinning.") as base:
        yield from make_setup(base)


def make_setup(base):
    ca, crt, key = make_cert(base / "good", "mx.good.test")
    other_ca = make_cert(base / "other", "other.test")[0]
    ca_pub = base / "ca-pub.pem"
    ca_pub.write_bytes(openssl("x509", "-in", ca, "-noout", "-pubkey"))
    cert_fp = colon_hex(hashlib.sha256(openssl("x509", "-in", crt, "-outform", "DER"))
                        .digest())
    spki = openssl("pkey", "-pubin", "-outform", "DER",
                   data=openssl("x509", "-in", crt, "-noout", "-pubkey"))
    key_fp = colon_hex(hashlib.sha256(spki).digest())
    policy = {
        "fp-cert": f"fingerprint match={cert_fp}",
        "fp-pkey": f"fingerprint match={key_fp.lower()}",
        "fp-two": f"fingerprint match=AA:BB|{key_fp}",
        "fp-multi": f"fingerprint match=AA:BB:CC:DD match={cert_fp}",
        "fp-wrong": "fingerprint match=" + ":".join(["AB"] * 32),
        "fp-none": "fingerprint match=AA:BB:CC",
        "fp-main": "fingerprint",
        "ta-ca": f"verify match=mx.good.test tafile={ca}",
        "ta-pub": f"secure match=mx.good.test tafile={ca_pub}",
        "ta-other": f"verify match=mx.good.test tafile={other_ca}",
        "ta-name": f"verify match=nosuch.test tafile={ca}",
        "ta-main": "verify match=mx.good.test",
        "ta-missing": "verify match=mx.good.test tafile=/nonexistent/ta.pem",
        "ta-empty": f"secure tafile={base / 'good' / 'ext.cnf'}",
    }
    port = free_port_on(*ADDR.values())
    receivers = {case: Receiver(addr, port, tls=(crt, key)).start()
                 for case, addr in ADDR.items()}
    policy_file, transport_file = base / "tls_policy", base / "transport"
    policy_file.write_text("".join(f"[{ADDR[c]}]:{port} {v}\n" for c, v in policy.items()))
    transport_file.write_text("".join(f"{c}.test smtp:[{a}]:{port}\n" for c, a in ADDR.items()))
    main = [f"smtp_tls_policy_maps = texthash:{policy_file}",
            f"transport_maps = texthash:{transport_file}",
            f"smtp_tls_CAfile = {ca}", "smtp_tls_loglevel = 1",
            f"smtp_tls_trust_anchor_file = {other_ca}",
            f"smtp_tls_fingerprint_cert_match = AA:BB:CC:DD, {key_fp} 11:22"]
    cert_sha1 = colon_hex(hashlib.sha1(openssl("x509", "-in", crt, "-outform", "DER")).digest())
    yield dict(port=port, main=main, receivers=receivers, cert_sha1=cert_sha1)
    for r in receivers.values():
        r.stop()


def both_outcomes(make_instance, main, tag):
    """Each case sent through Postfix and Postern with main: their TLS
    outcomes (postfix_reference.tls_outcome), Postern's and Postfix's, and
    all Postern's smtp logged."""
    pf = PostfixInstance(extra_main=main)
    try:
        pf.start()
        inst = make_instance(extra_main=main)
        for case in ADDR:
            rcpt = [RCPT[case]]
            pf.send(simple_message(f"{tag} postfix {case}"), rcpts=rcpt, sender="s@sender.test")
            inst.send(simple_message(f"{tag} postern {case}"), rcpts=rcpt)
        try:
            theirs = wait_tls_outcomes(pf.smtp_log, ADDR, RCPT)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{pf.log_tail(60)}") from None
        ours = wait_tls_outcomes(inst.smtp_log, ADDR, RCPT)
    finally:
        pf.cleanup()
    return ours, theirs, inst.smtp_log()


def check_outcomes(setup, ours, theirs, tag, sent):
    for case in ADDR:
        assert ours[case] == theirs[case], (case, ours[case], theirs[case])
        if case in UNUSABLE:
            assert ours[case][-1] == "deferred 4.7.5 (client TLS configuration problem)", case
            continue
        want = "sent 2.0.0" if case in sent else "deferred 4.7.5 (Server certificate not verified)"
        assert ours[case][-1] == want, (case, ours[case])
        assert ours[case][-2] == ("Verified TLS" if case in sent else "Untrusted TLS"), case
    for case, rcv in setup["receivers"].items():
        subjects = sorted(subject for subject in (
            m["data"].split(b"Subject: ")[1].split(b"\r\n")[0].decode() for m in rcv.messages)
            if subject.startswith(tag + " "))
        assert subjects == ([f"{tag} postern {case}", f"{tag} postfix {case}"]
                            if case in sent else []), case


def test_fingerprint_and_trust_anchors_as_postfix(make_instance, setup):
    ours, theirs, log = both_outcomes(make_instance, setup["main"], "sha256")
    check_outcomes(setup, ours, theirs, "sha256", SENT)
    # The expected words, spelt out once (the comparison above covers the rest).
    assert "warning: 127.0.0.92[127.0.0.92]:PORT: unusable TLSA RR: 3 1 255 AABB" in ours["fp-two"]
    assert ours["fp-none"][-3].endswith("num=1:unspecified certificate verification error")
    assert ours["fp-wrong"][-3].endswith("num=65:no matching DANE TLSA records")
    assert ours["ta-name"][-3].endswith("num=62:hostname mismatch")
    assert ("warning: error opening trust anchor file: /nonexistent/ta.pem: "
            "No such file or directory") in log


def test_another_fingerprint_digest(make_instance, setup):
    """smtp_tls_fingerprint_digest = sha1: SHA-256 fingerprints are now of
    the wrong length (unusable, so never verified); the SHA-1 one of the
    certificate in smtp_tls_fingerprint_cert_match pins it."""
    main = [*setup["main"], "smtp_tls_fingerprint_digest = sha1",
            f"smtp_tls_fingerprint_cert_match = {setup['cert_sha1']}"]
    ours, theirs, _ = both_outcomes(make_instance, main, "sha1")
    check_outcomes(setup, ours, theirs, "sha1", {"fp-main", "ta-ca", "ta-pub"})
    assert ours["fp-cert"][-4].endswith(": all fingerprints unusable")
