"""smtpd TLS: STARTTLS with `openssl s_client -starttls smtp` and `swaks
--tls`, wrapper mode on a second listener (-o smtpd_tls_wrappermode=yes),
Received: with the TLS version and cipher and protocol ESMTPS, plaintext
pipelined behind STARTTLS discarded and the session state reset
(CVE-2011-0411), smtpd_tls_security_level = encrypt,
smtpd_tls_protocols enforced, and session resumption by ticket
(smtpd_tls_session_cache_timeout)."""

import re
import ssl
import subprocess

import pytest

from postern_instance import HELO, SENDER, QUEUED_RE, crlf, simple_message, wait_port
from smtpd_fixture import TLSRaw, client_context, free_port, make_cert, master_cf, tls_lines

TLS_LOG = r"^Anonymous TLS connection established from unknown\[127\.0\.0\.1\]: TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)$"


def start_tls_instance(make_instance, level="may", extra=(), wrapper=False):
    inst = make_instance(start=False)
    inst.wrapper_port = free_port() if wrapper else None
    inst.write_master_cf(master_cf(inst.port, inst.wrapper_port))
    cert, key = make_cert(inst.root)
    inst.write_main_cf(tls_lines(cert, key, level) + list(extra))
    inst.start()
    if wrapper:
        wait_port(inst.wrapper_port)
    return inst


@pytest.fixture
def tls_instance(make_instance):
    return start_tls_instance(make_instance, wrapper=True)


def received_of(data):
    head = data.split(b"\n\n", 1)[0].decode()
    m = re.search(r"^Received: .*?(?=^\S)", head + "\nX:", re.M | re.S)
    assert m, head
    return m.group(0)


def transaction(c, rcpt="alice@localhost", subject="tls"):
    assert c.cmd(f"MAIL FROM:<{SENDER}>") == (250, ["2.1.0 Ok"])
    assert c.cmd(f"RCPT TO:<{rcpt}>") == (250, ["2.1.5 Ok"])
    assert c.cmd("DATA")[0] == 354
    c.send(crlf(simple_message(subject=subject)) + b".\r\n")
    code, texts = c.read_reply()
    assert code == 250, texts
    return QUEUED_RE.match(texts[0])["id"]


def test_openssl_s_client_starttls_transaction(tls_instance):
    inst = tls_instance
    script = (f"EHLO {HELO}\nMAIL FROM:<{SENDER}>\nRCPT TO:<alice@localhost>\nDATA\n"
              "Subject: via s_client\n\nover TLS\n.\nQUIT\n")
    out = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                          f"127.0.0.1:{inst.port}", "-quiet", "-crlf"],
                         input=script.encode(), capture_output=True, timeout=60).stdout.decode()
    m = re.search(r"^250 2\.0\.0 Ok: queued as (\w+)\r?$", out, re.M)
    assert m, out
    qid = m[1]
    assert re.search(r"^221 2\.0\.0 Bye", out, re.M), out
    data = inst.wait_delivered("alice")[0].read_bytes()
    rec = received_of(data)
    assert re.search(r"\n\t\(using TLSv1\.3 with cipher TLS_\w+ \(\d+/\d+ bits\)\)\n"
                     r"\t\(No client certificate requested\)\n"
                     rf"\tby mx\.test\.example \(Postern\) with ESMTPS id {qid}\n", rec), rec
    assert data.endswith(b"\n\nover TLS\n")
    inst.wait_log(TLS_LOG, program="smtpd")
    inst.wait_log(r"^disconnect from unknown\[127\.0\.0\.1\] ehlo=2 starttls=1 mail=1 rcpt=1 "
                  r"data=1 quit=1 commands=7$", program="smtpd")


def test_swaks_tls_transaction(tls_instance):
    inst = tls_instance
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{inst.port}", "--to", "bob@localhost",
                        "--from", SENDER, "--helo", HELO, "--tls"],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert "<-  220 2.0.0 Ready to start TLS" in out, out
    # swaks marks lines sent and received inside TLS with ~
    assert re.search(r"^<~  250 2\.0\.0 Ok: queued as \w+$", out, re.M), out
    data = inst.wait_delivered("bob")[0].read_bytes()
    assert " with ESMTPS id " in received_of(data)


def test_plaintext_pipelined_after_starttls_is_discarded(tls_instance):
    inst = tls_instance
    with TLSRaw(inst.port) as c:
        assert c.read_reply()[0] == 220
        code, ehlo = c.cmd(f"EHLO {HELO}")
        assert code == 250 and "STARTTLS" in ehlo, ehlo
        # A transaction begun in plaintext must not survive STARTTLS.
        assert c.cmd(f"MAIL FROM:<{SENDER}>") == (250, ["2.1.0 Ok"])
        c.send(b"STARTTLS\r\nRSET\r\n")
        assert c.read_reply() == (220, ["2.0.0 Ready to start TLS"])
        assert c.buf == b"", c.buf          # no plaintext answer to RSET either
        c.starttls()
        assert c.nothing_pending(1.0), c.buf    # RSET is never answered inside TLS
        code, ehlo = c.cmd(f"EHLO {HELO}")
        assert code == 250 and ehlo[0] == "mx.test.example", ehlo
        assert "STARTTLS" not in ehlo, ehlo
        # The MAIL from before TLS is forgotten.
        assert c.cmd("RCPT TO:<alice@localhost>") == (503, ["5.5.1 Error: need MAIL command"])
        qid = transaction(c, subject="after starttls")
        assert c.cmd("QUIT")[0] == 221
    inst.wait_delivered("alice")
    line = inst.wait_log(r"^disconnect from unknown\[127\.0\.0\.1\] ", program="smtpd")[0]
    assert "rset" not in line.text, line.text
    assert inst.find_log(rf"^{qid}: client=unknown\[127\.0\.0\.1\]$", program="smtpd")


def test_wrapper_mode_listener(tls_instance):
    inst = tls_instance
    with TLSRaw(inst.wrapper_port, wrapped=True) as c:
        assert c.read_reply() == (220, ["mx.test.example ESMTP Postern"])
        code, ehlo = c.cmd(f"EHLO {HELO}")
        assert code == 250 and "STARTTLS" not in ehlo, ehlo
        assert c.cmd("STARTTLS") == (554, ["5.5.1 Error: TLS already active"])
        qid = transaction(c, rcpt="carol@localhost", subject="wrapped")
        assert c.cmd("QUIT")[0] == 221
    data = inst.wait_delivered("carol")[0].read_bytes()
    assert f" with ESMTPS id {qid}" in received_of(data)
    # A plaintext client on the wrapper port gets no banner: the server
    # waits for a TLS ClientHello.
    with TLSRaw(inst.wrapper_port) as c:
        assert c.nothing_pending(1.0)


def test_security_level_encrypt_requires_starttls(make_instance):
    inst = start_tls_instance(make_instance, level="encrypt")
    with TLSRaw(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>") == (
            530, ["5.7.0 Must issue a STARTTLS command first"])
        assert c.cmd("STARTTLS")[0] == 220
        c.starttls()
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        transaction(c, subject="encrypted")
    inst.wait_delivered("alice")


def test_tls_protocols_enforced(make_instance):
    inst = start_tls_instance(make_instance, extra=["smtpd_tls_protocols = >=TLSv1.3"])
    with TLSRaw(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd("STARTTLS")[0] == 220
        ctx = client_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            c.sock = ctx.wrap_socket(c.sock)
            c.cmd(f"EHLO {HELO}")
    inst.wait_log(r"^SSL_accept error from unknown\[127\.0\.0\.1\]: ", program="smtpd")


def starttls_session(port, ctx, session=None, source=None):
    """One STARTTLS session offering session; (its TLS session, resumed?)."""
    c = TLSRaw(port, source=source)
    try:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd("STARTTLS")[0] == 220
        c.sock = ctx.wrap_socket(c.sock, session=session)
        c.buf = b""
        assert c.cmd(f"EHLO {HELO}")[0] == 250   # TLS 1.3 tickets arrive with it
        return c.sock.session, c.sock.session_reused
    finally:
        c.cmd("QUIT")
        c.close()


@pytest.mark.parametrize("timeout, resumes", [(None, True), ("0", False)])
def test_session_resumption_by_ticket(make_instance, timeout, resumes):
    """smtpd_tls_session_cache_timeout (default 3600s): a client offering
    the session of its previous connection resumes it; 0 turns it off."""
    extra = [] if timeout is None else [f"smtpd_tls_session_cache_timeout = {timeout}"]
    inst = start_tls_instance(make_instance, extra=extra)
    ctx = client_context()
    session, reused = starttls_session(inst.port, ctx)
    assert not reused
    for _ in range(2):
        session, reused = starttls_session(inst.port, ctx, session)
        assert reused == resumes
