"""MTA-STS the Postfix way: smtp_tls_policy_maps =
socketmap:inet:127.0.0.1:PORT:postfix answered by Debian's real
postfix-mta-sts-resolver (mta-sts-daemon), started privately by the test.

The daemon finds each domain's "_mta-sts" TXT record in the tests' dnsmasq
and fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt from an HTTPS
server of the test, whose certificate it trusts through SSL_CERT_FILE.
Its resolver (c-ares 1.18) reads only /etc/resolv.conf and always asks
port 53, so dnsmasq listens on port 53 of a loopback address of its own
and the daemon runs in a private mount namespace whose /etc/resolv.conf
names that address: the daemon itself is unchanged.

For an "enforce" policy the daemon answers "OK secure
match=MX1:MX2 servername=hostname" (a "*.domain" MX becomes ".domain"):

sts-good.test   the MX certificate matches the policy's mx: sent, Verified,
                with the MX host name as SNI
sts-wild.test   policy "mx: *.sts-wild.test": sent, Verified
sts-bad.test    the MX certificate names another host: deferred 4.7.5
                "Server certificate not verified" after "server
                certificate verification failed ... hostname mismatch"
sts-none.test   no _mta-sts record: NOTFOUND, smtp_tls_security_level
                (may) applies: sent

Debian's Postfix, started in the same kind of namespace with the same
settings and daemon, logs the same outcome for each (trust word,
verification failure, status). A second daemon listens on a UNIX socket
for socketmap:unix:/path:postfix.

Beside the real daemon, scripted socketmap servers that misbehave (a
malformed netstring, a close mid-reply, no answer at all) make the policy
lookup fail: the message is deferred "TLS policy lookup failure" with a
warning, never sent in clear, and stays queued; remote lives on.
"""

import http.server
import os
import random
import re
import socket
import socketserver
import ssl
import subprocess
import threading
import time

import pytest

from dnsmasq_fixture import DnsServer
from postern_instance import simple_message, stop_process, wait_until
from postfix_reference import PostfixInstance, readable_tmpdir, wait_tls_outcomes
from smtp_peers import Receiver, free_port_on, make_cert, wait_listening

DAEMON = "/usr/bin/mta-sts-daemon"
MX = {"good": ("mx.sts-good.test", "127.0.0.71"), "wild": ("mx7.sts-wild.test", "127.0.0.72"),
      "bad": ("mx.sts-bad.test", "127.0.0.73"), "none": ("mx.sts-none.test", "127.0.0.74")}
POLICIES = {"sts-good.test": "mx: mx.sts-good.test\nmx: backup.sts-good.test\n",
            "sts-wild.test": "mx: *.sts-wild.test\n",
            "sts-bad.test": "mx: mx.sts-bad.test\n"}


def private_loopback(port):
    """A 127/8 address where port is free for TCP and UDP."""
    for _ in range(50):
        addr = f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.{random.randint(2, 250)}"
        try:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((addr, port))
        except OSError:
            continue
        return addr
    raise AssertionError(f"no loopback address with port {port} free")


def in_namespace(resolv):
    """argv words that run a command in a private mount namespace whose
    /etc/resolv.conf is the file resolv."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv)]


class PolicyHandler(http.server.BaseHTTPRequestHandler):
    """/.well-known/mta-sts.txt of the domain in the Host header."""

    def do_GET(self):
        domain = self.headers.get("Host", "").split(":")[0].removeprefix("mta-sts.")
        body = POLICIES.get(domain)
        if self.path != "/.well-known/mta-sts.txt" or body is None:
            self.send_error(404)
            return
        data = f"version: STSv1\nmode: enforce\n{body}max_age: 86400\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class HttpsServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def sts():
    # Readable to Postfix's smtp too (the CA file), for the comparison.
    with readable_tmpdir("sts.") as base:
        yield from make_sts(base)


def make_sts(base):
    # One CA for the MX certificates (smtp_tls_CAfile) and the policy host
    # (the daemon's SSL_CERT_FILE).
    ca, web_crt, web_key = make_cert(
        base / "web", "mta-sts.sts-good.test",
        san=",".join(f"DNS:mta-sts.{d}" for d in POLICIES))
    ca_key = base / "web" / "ca.key"
    certs = {}
    for kind, (name, _) in MX.items():
        cn = "other.sts-bad.test" if kind == "bad" else name
        d = base / kind
        d.mkdir()
        (d / "ext").write_text(f"subjectAltName = DNS:{cn}\n")
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                        "-keyout", str(d / "k"), "-out", str(d / "csr")], check=True,
                       capture_output=True, timeout=60)
        subprocess.run(["openssl", "x509", "-req", "-in", str(d / "csr"), "-CA", ca, "-CAkey",
                        str(ca_key), "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext"),
                        "-out", str(d / "crt")], check=True, capture_output=True, timeout=60)
        certs[kind] = (str(d / "crt"), str(d / "k"))

    web_addr = private_loopback(443)
    https = HttpsServer((web_addr, 443), PolicyHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(web_crt, web_key)
    https.socket = ctx.wrap_socket(https.socket, server_side=True)
    threading.Thread(target=https.serve_forever, daemon=True).start()

    dns_addr = private_loopback(53)
    dns = DnsServer(mx=[(name.split(".", 1)[1], name, 10) for name, _ in MX.values()],
                    hosts=list(MX.values()) + [(f"mta-sts.{d}", web_addr) for d in POLICIES],
                    txt=[(f"_mta-sts.{d}", f"v=STSv1; id=2026{i}") for i, d in
                         enumerate(POLICIES)],
                    port=53, address=dns_addr).start()

    resolv = base / "resolv.conf"
    resolv.write_text(f"nameserver {dns_addr}\n")
    port = free_port_on("127.0.0.1")
    sock = base / "mta-sts.sock"
    daemons = []
    try:
        # One on TCP, one on a UNIX socket (mode 0666: remote is not root).
        daemons.append(start_daemon(base, "inet", f"host: 127.0.0.1\nport: {port}\n", resolv,
                                    ca))
        daemons.append(start_daemon(base, "unix", f"path: {sock}\nmode: 0666\n", resolv, ca))
        wait_listening("127.0.0.1", port, timeout=20)
        wait_until(lambda: unix_listening(sock), 20, what="the daemon's UNIX socket")
        yield dict(certs=certs, ca=ca, port=port, sock=sock, dns=dns, resolv=resolv)
    finally:
        for daemon in daemons:
            stop_process(daemon, timeout=10)
        https.shutdown()
        https.server_close()
        dns.close()


def start_daemon(base, name, listen, resolv, ca):
    """mta-sts-daemon with listen (its host/port or path/mode settings),
    its resolver on the tests' dnsmasq, trusting the test CA for HTTPS."""
    config = base / f"{name}.yml"
    # reuse_port stays on: this version's "reuse_port: false" does not start.
    config.write_text(listen + "shutdown_timeout: 1\ncache:\n  type: internal\n"
                      "default_zone:\n  strict_testing: false\n  timeout: 4\n")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["SSL_CERT_FILE"] = ca
    with open(base / f"{name}.out", "wb") as out:
        return subprocess.Popen(
            [*in_namespace(resolv), DAEMON, "-v", "debug", "-c", str(config),
             "-l", str(base / f"{name}.log")],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def unix_listening(path):
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def socketmap_query(port, name, key, timeout=10):
    """One request to the daemon, as Postfix asks it: the raw netstring reply."""
    req = f"{name} {key}".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"%d:%s," % (len(req), req))
        data = b""
        while not data.endswith(b","):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.decode()


@pytest.fixture
def receivers(sts):
    port = free_port_on(*[addr for _, addr in MX.values()])
    made = {kind: Receiver(addr, port, tls=sts["certs"][kind]).start()
            for kind, (_, addr) in MX.items()}
    yield made
    for r in made.values():
        r.stop()


def delivery(inst, qid, rcpt, timeout=40):
    rx = rf"^{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), .*dsn=(\S+), status=(\w+) \((.*)\)$"
    line = inst.wait_log(rx, program="smtp", timeout=timeout)[0]
    return re.match(rx, line.text).groups()


def test_daemon_answers_in_postfix_format(sts):
    """What Postern's socketmap client must understand, from the daemon."""
    good = socketmap_query(sts["port"], "postfix", "sts-good.test")
    m = re.fullmatch(r"(\d+):OK secure match=(\S+) servername=hostname,", good)
    assert m, good
    assert sorted(m.group(2).split(":")) == ["backup.sts-good.test", "mx.sts-good.test"]
    assert socketmap_query(sts["port"], "postfix", "sts-wild.test").endswith(
        ":OK secure match=.sts-wild.test servername=hostname,")
    assert socketmap_query(sts["port"], "postfix", "sts-none.test") == "9:NOTFOUND ,"


def tls_settings(sts, port):
    """main.cf lines for Postern and Postfix alike."""
    return [f"smtp_tcp_port = {port}",
            f"smtp_tls_policy_maps = socketmap:inet:127.0.0.1:{sts['port']}:postfix",
            f"smtp_tls_CAfile = {sts['ca']}", "smtp_tls_security_level = may",
            "smtp_tls_loglevel = 1"]


def test_secure_policy_from_the_daemon(make_instance, sts, receivers):
    port = receivers["good"].port
    inst = make_instance(start=False)
    inst.append_main_cf(f"dns_servers = {sts['dns'].servers}", *tls_settings(sts, port))
    inst.start()
    rcpts = {kind: f"u@{name.split('.', 1)[1]}" for kind, (name, _) in MX.items()}
    qids = {kind: inst.send(simple_message(f"sts {kind}"), rcpts=[rcpt])
            for kind, rcpt in rcpts.items()}
    got = {kind: delivery(inst, qids[kind], rcpts[kind]) for kind in MX}
    for kind in ("good", "wild", "none"):
        assert got[kind][2] == "sent", (kind, got[kind])
    relay, dsn, status, text = got["bad"]
    assert (dsn, status, text) == ("4.7.5", "deferred", "Server certificate not verified")
    name, addr = MX["bad"]
    assert inst.find_log(rf"^server certificate verification failed for {re.escape(name)}"
                         rf"\[{re.escape(addr)}\]:{port}: num=62:hostname mismatch$",
                         program="smtp")
    for kind, word in (("good", "Verified"), ("wild", "Verified"), ("none", "Trusted")):
        name, addr = MX[kind]
        assert inst.find_log(rf"^{word} TLS connection established to {re.escape(name)}"
                             rf"\[{re.escape(addr)}\]:{port}: ", program="smtp"), kind
    # servername=hostname: the MX host name as SNI; the bad one never got mail.
    assert receivers["good"].wait_messages(1)[0]["tls"]
    assert receivers["good"].sni_names == ["mx.sts-good.test"]
    assert receivers["wild"].sni_names == ["mx7.sts-wild.test"]
    assert receivers["bad"].messages == []
    assert qids["bad"] in [f.name for f in inst.queue_files()]
    # Debian's Postfix with the same settings and daemon decides and logs
    # alike (its resolver, too, reads the private /etc/resolv.conf).
    ours = wait_tls_outcomes(inst.smtp_log, {k: addr for k, (_, addr) in MX.items()})
    pf = PostfixInstance(extra_main=[*tls_settings(sts, port), "relayhost =",
                                     "smtp_dns_support_level = enabled"])
    try:
        pf.start(wrapper=in_namespace(sts["resolv"]))
        for kind, rcpt in rcpts.items():
            pf.send(simple_message(f"postfix {kind}"), rcpts=[rcpt], sender="s@sender.test")
        try:
            theirs = wait_tls_outcomes(pf.smtp_log, {k: addr for k, (_, addr) in MX.items()})
        except AssertionError as e:
            raise AssertionError(f"{e}\n{pf.log_tail(60)}") from None
    finally:
        pf.cleanup()
    assert ours == theirs
    assert receivers["good"].sni_names == ["mx.sts-good.test"] * 2


def test_socketmap_over_a_unix_socket(make_instance, sts, receivers):
    """socketmap:unix:/path:name, the daemon's other way of listening."""
    port = receivers["good"].port
    inst = make_instance(start=False)
    inst.append_main_cf(f"dns_servers = {sts['dns'].servers}", f"smtp_tcp_port = {port}",
                        f"smtp_tls_policy_maps = socketmap:unix:{sts['sock']}:postfix",
                        f"smtp_tls_CAfile = {sts['ca']}", "smtp_tls_loglevel = 1")
    inst.start()
    good = inst.send(simple_message("unix good"), rcpts=["u@sts-good.test"])
    bad = inst.send(simple_message("unix bad"), rcpts=["u@sts-bad.test"])
    assert delivery(inst, good, "u@sts-good.test")[2] == "sent"
    assert delivery(inst, bad, "u@sts-bad.test")[1:] == (
        "4.7.5", "deferred", "Server certificate not verified")
    assert inst.find_log(r"^Verified TLS connection established to mx\.sts-good\.test",
                         program="smtp")


# --- hostile socketmap servers ----------------------------------------------------


def malformed(conn):
    conn.recv(4096)
    conn.sendall(b"12:OK secure;")          # wrong terminator


def oversized_length(conn):
    conn.recv(4096)
    conn.sendall(b"99999999999:OK secure,")


def close_mid_reply(conn):
    conn.recv(4096)
    conn.sendall(b"30:OK secure match=")


def silent(conn):
    conn.recv(4096)
    time.sleep(8)


HOSTILE = {"malformed": malformed, "oversized": oversized_length, "close": close_mid_reply,
           "silent": silent}


class ScriptedSocketmap:
    """A socketmap server that runs script(conn) on every connection."""

    def __init__(self, script):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.script = script
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            try:
                self.script(conn)
            except OSError:
                pass

    def stop(self):
        self.sock.close()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_socketmap_defers(make_instance, sts, receivers, kind):
    server = ScriptedSocketmap(HOSTILE[kind])
    port = receivers["good"].port
    try:
        inst = make_instance(start=False)
        inst.append_main_cf(f"dns_servers = {sts['dns'].servers}", f"smtp_tcp_port = {port}",
                            f"smtp_tls_policy_maps = socketmap:inet:127.0.0.1:{server.port}:x",
                            "lookup_server_timeout = 3s", "smtp_tls_security_level = may")
        inst.start()
        qid = inst.send(simple_message(f"hostile {kind}"), rcpts=["u@sts-good.test"])
        relay, dsn, status, text = delivery(inst, qid, "u@sts-good.test")
        assert (dsn, status, text) == ("4.7.5", "deferred", "TLS policy lookup failure"), text
        assert inst.find_log(r"^warning: .*socketmap", program="smtp"), kind
        assert server.connections >= 1
        assert receivers["good"].messages == []
        assert qid in [f.name for f in inst.queue_files()]
        assert not inst.find_log(r"(fatal|panic):", program="smtp")
    finally:
        server.stop()
