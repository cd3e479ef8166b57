"""smtpd behind a load balancer: smtpd_upstream_proxy_protocol = haproxy.

A real haproxy (Debian's package, started privately with its own
configuration in the test directory) listens on two ports in TCP mode and
forwards to smtpd with send-proxy (PROXY v1) and send-proxy-v2. Postern
must log, check and write into Received: the client haproxy accepted, not
haproxy's own address; a restriction on the original address decides. A
connection straight to smtpd without a header, with a malformed one or an
over-long one, or one that sends nothing in smtpd_upstream_proxy_timeout,
is closed with Postfix's "haproxy read: ..." warning and never greeted.
"""

import smtplib
import socket
import subprocess
import time

import pytest

from postfix_reference import started_postfix
from postern_instance import (HELO, SENDER, free_port, parse_log, simple_message, stop_process,
                              wait_until)

HAPROXY_CFG = """global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:{v1}
    default_backend smtpd_v1
frontend v2
    bind 127.0.0.1:{v2}
    default_backend smtpd_v2
backend smtpd_v1
    server postern 127.0.0.1:{smtpd} send-proxy
backend smtpd_v2
    server postern 127.0.0.1:{smtpd} send-proxy-v2
"""


@pytest.fixture
def proxied(make_instance):
    inst = make_instance(start=False)
    (inst.etc / "clients").write_text("127.0.0.5 REJECT proxied client refused\n")
    inst.append_main_cf("smtpd_upstream_proxy_protocol = haproxy",
                        "smtpd_upstream_proxy_timeout = 2s",
                        f"smtpd_client_restrictions = check_client_access cidr:{inst.etc}/clients")
    inst.start(wait=False)
    wait_until(lambda: port_bound(inst.port), 15, what="smtpd's listener")
    v1, v2 = free_port(), free_port()
    cfg = inst.root / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(v1=v1, v2=v2, smtpd=inst.port))
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: port_bound(v1) and port_bound(v2), 15, what="haproxy's listeners")
        inst.v1, inst.v2 = v1, v2
        yield inst
    finally:
        stop_process(proc)


def port_bound(port):
    """Whether something listens on 127.0.0.1:port, found without
    connecting (a connection without a header would be logged)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def send_via(port, source, rcpt="alice@localhost", subject="proxied"):
    with smtplib.SMTP("127.0.0.1", port, local_hostname=HELO, timeout=30,
                      source_address=(source, 0)) as s:
        s.ehlo(HELO)
        s.mail(SENDER)
        code, resp = s.rcpt(rcpt)
        if code != 250:
            return code, resp
        return s.data(simple_message(subject).replace("\n", "\r\n").encode())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_original_client_logged_checked_and_received(proxied, version):
    inst = proxied
    port = inst.v1 if version == "v1" else inst.v2
    code, resp = send_via(port, "127.0.0.4", subject=f"via {version}")
    assert code == 250, resp
    inst.wait_log(r"connect from unknown\[127\.0\.0\.4\]$", program="smtpd")
    inst.wait_log(r": client=unknown\[127\.0\.0\.4\]$", program="smtpd")
    [copy] = inst.wait_delivered("alice")
    data = copy.read_bytes().decode()
    assert f"Received: from {HELO} (unknown [127.0.0.4])" in data, data[:400]
    # the restriction sees the original address, not haproxy's 127.0.0.1
    code, resp = send_via(port, "127.0.0.5")
    assert code == 554, resp
    assert b"5.7.1 <unknown[127.0.0.5]>: Client host rejected: proxied client refused" in resp
    inst.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.5\]: 554 5\.7\.1",
                  program="smtpd")
    # haproxy's own address never appears as a client
    assert not inst.find_log(r"\[127\.0\.0\.1\]", program="smtpd")


def raw_attempt(port, payload, wait_close=10):
    """Connect straight to smtpd, send payload (may be empty); return what
    smtpd sent back before closing (a reset counts as a close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_close) as s:
        if payload:
            s.sendall(payload)
        got = b""
        deadline = time.monotonic() + wait_close
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                break
            except ConnectionResetError:   # closed with our bytes unread
                return got
            if not chunk:
                return got
            got += chunk
        raise AssertionError(f"smtpd did not close the connection; got {got!r}")


# What a connection straight to smtpd sends, and the reason Postfix 3.7's
# smtpd logs for it ("warning: haproxy read: REASON"; checked against the
# installed Postfix in test_refusals_as_postfix).
REFUSED = [
    (b"EHLO direct.test\r\n", r"unrecognized protocol header: EHLO direct.test\r\n"),
    (b"PROXY TCP4 192.0.2.1 192.0.2.2 99999 25\r\n",
     r"bad or missing client port: PROXY TCP4 192.0.2.1 192.0.2.2 99999 25\r\n"),
    (b"PROXY TCP4 192.0.2.300 192.0.2.2 1234 25\r\n",
     r"bad or missing client address: PROXY TCP4 192.0.2.300 192.0.2.2 1234 25\r\n"),
    (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff",
     r"short version 2 protocol header: \r\n\r\n\000\r\nQUIT\n!\021\377\377"),
    (b"", "timeout error"),
]
# An over-long v1 line: Postfix 3.7 parses what it peeked and names the
# first bad field; Postern stops at the 107 bytes the protocol allows.
OVERLONG = (b"PROXY TCP4 " + b"1" * 200 + b"\r\n", "line > 107 characters: PROXY TCP4 1")


def refusal_lines(log_lines, program_suffix):
    return [l.text.split("haproxy read: ", 1)[1] for l in log_lines
            if "haproxy read: " in l.text and l.program.endswith(program_suffix)]


@pytest.mark.parametrize("payload,reason", REFUSED + [OVERLONG])
def test_direct_or_bad_header_refused_and_logged(proxied, payload, reason):
    inst = proxied
    got = raw_attempt(inst.port, payload)
    assert got == b"421 4.3.0 mx.test.example Server local error\r\n", got
    line = inst.wait_log(r"haproxy read: ", program="smtpd")[0]
    assert line.text.startswith("warning: haproxy read: " + reason), line.text
    # then the connection's own client is logged, as Postfix does
    inst.wait_log(r"connect from unknown\[127\.0\.0\.1\]$", program="smtpd")
    inst.wait_log(r"disconnect from unknown\[127\.0\.0\.1\] commands=0/0$", program="smtpd")
    # the service is still there for proxied clients
    code, resp = send_via(inst.v2, "127.0.0.6")
    assert code == 250, resp


def test_refusals_as_postfix():
    pf = started_postfix(["smtpd_upstream_proxy_protocol = haproxy",
                          "smtpd_upstream_proxy_timeout = 2s"])
    try:
        wait_until(lambda: refusal_lines(parse_log(pf.log), "/smtpd"), 10,
                   what="the start-up probe's line")   # wait_port's own connection
        for payload, _ in REFUSED:
            got = raw_attempt(pf.port, payload)
            assert got == b"421 4.3.0 mx.test.example Server local error\r\n", got
        want = [reason for _, reason in REFUSED]
        lines = wait_until(lambda: (lambda r: r if len(r) > len(want) else None)(
            refusal_lines(parse_log(pf.log), "/smtpd")), 10, what="Postfix's warnings")
        assert lines[1:] == want
    finally:
        pf.cleanup()
