"""A real DNS server for the end-to-end tests: dnsmasq on 127.0.0.1 with a
free port, authoritative for the zone `test` and for the reverse zones
in-addr.arpa and ip6.arpa (anything not configured there is NXDOMAIN, a
name without the asked type is NODATA), serving the MX, A, AAAA and PTR
records a test gives it: a host record (name, address) is an A or AAAA
record with its PTR, a PTR record (address, name) is only the PTR. Postern
points at it with `dns_servers = 127.0.0.1:PORT`, so no test ever asks a
real resolver.

SERVFAIL comes from a tiny UDP responder (ServfailServer) that dnsmasq
forwards chosen domains to (a reverse zone such as
"6.0.0.127.in-addr.arpa" too): dnsmasq passes its SERVFAIL on, as a broken
authoritative server would make a real resolver do. SilentServer never
answers, for timeouts.

    dns = DnsServer(mx=[("two.test", "mx1.two.test", 10)],
                    hosts=[("mx1.two.test", "127.0.0.2")],
                    ptrs=[("127.0.0.3", "reverse-only.test")])
    dns.start(); ... dns.servers  -> "127.0.0.1:PORT"; dns.stop()
"""

import ipaddress
import os
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

ZONE = "test"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


def free_udp_tcp_port():
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port for dnsmasq")


def build_query(name, qtype):
    """A DNS query packet (recursion desired) for name and qtype (1 A, 15 MX)."""
    qid = random.randint(0, 0xFFFF)
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l)
    return qid, struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + \
        struct.pack(">HH", qtype, 1)


def query_rcode(port, name, qtype=15, timeout=1.0, address="127.0.0.1"):
    """(rcode, answer count) of one UDP query, or None on timeout."""
    qid, pkt = build_query(name, qtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(pkt, (address, port))
        try:
            data, _ = s.recvfrom(65536)
        except socket.timeout:
            return None
    if len(data) < 12 or struct.unpack(">H", data[:2])[0] != qid:
        return None
    flags, _qd, an = struct.unpack(">HHH", data[2:8])
    return flags & 0xF, an


def _skip_name(data, pos):
    """Position after the (possibly compressed) name at pos."""
    while True:
        length = data[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += 1 + length


def query_mx_prefs_tcp(port, name, timeout=5.0):
    """The preferences of name's MX records, in the order the server sends
    them (over TCP, so a reply of any size arrives whole)."""
    _qid, pkt = build_query(name, 15)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(struct.pack(">H", len(pkt)) + pkt)
        buf = b""
        while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError("DNS server closed the TCP connection")
            buf += chunk
    data = buf[2:]
    count = struct.unpack(">H", data[6:8])[0]
    pos = _skip_name(data, 12) + 4
    prefs = []
    for _ in range(count):
        pos = _skip_name(data, pos)
        rdlen = struct.unpack(">H", data[pos + 8:pos + 10])[0]
        pos += 10
        prefs.append(struct.unpack(">H", data[pos:pos + 2])[0])
        pos += rdlen
    return prefs


class ServfailServer:
    """Answers every query with SERVFAIL, from a thread, until stop()."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) < 12:
                continue
            self.queries += 1
            flags = struct.unpack(">H", data[2:4])[0]
            # QR, RA, RD echoed, RCODE 2; the question section copied back.
            reply = data[:2] + struct.pack(">H", 0x8082 | (flags & 0x0100)) + \
                struct.pack(">HHHH", 1, 0, 0, 0) + data[12:]
            try:
                self.sock.sendto(reply, peer)
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class SilentServer:
    """A UDP port that takes queries and never answers (a name server that
    is down without saying so), until stop()."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    @property
    def servers(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        self.sock.close()


def reverse_name(address):
    """The PTR name of an IPv4 or IPv6 address."""
    return ipaddress.ip_address(address).reverse_pointer


class DnsServer:
    """dnsmasq serving mx=[(domain, host, pref)], hosts=[(name, address)]
    (A or AAAA, and the PTR), ptrs=[(address, name)] (the PTR alone),
    null_mx=[domain], servfail=[domain] (forwarded to a ServfailServer),
    silent=[domain] (forwarded to a SilentServer: no answer for a while),
    txt=[(name, text)] (SPF for policyd-spf, MTA-STS). address: where it listens (a client that cannot be
    given a port, such as c-ares reading resolv.conf, needs port 53 on an
    address of its own)."""

    def __init__(self, mx=(), hosts=(), null_mx=(), servfail=(), ptrs=(), silent=(), port=None,
                 txt=(), address="127.0.0.1"):
        self.address = address
        self.port = port or free_udp_tcp_port()
        self.mx, self.hosts, self.ptrs = list(mx), list(hosts), list(ptrs)
        self.txt = list(txt)
        self.silent, self.silent_server = list(silent), None
        self.null_mx, self.servfail = list(null_mx), list(servfail)
        self.proc = None
        self.servfail_server = None
        self.logfile = tempfile.NamedTemporaryFile(prefix="dnsmasq.", suffix=".log", delete=False)

    @property
    def servers(self):
        return f"{self.address}:{self.port}"

    def argv(self):
        args = [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts",
                f"--listen-address={self.address}", "--bind-interfaces", f"--port={self.port}",
                "--conf-file=/dev/null", f"--local=/{ZONE}/", "--local=/in-addr.arpa/",
                "--local=/ip6.arpa/", "--log-queries", "--log-facility=-"]
        for domain, host, pref in self.mx:
            args.append(f"--mx-host={domain},{host},{pref}")
        for domain in self.null_mx:
            args.append(f"--mx-host={domain},.,0")
        for name, addr in self.hosts:
            args.append(f"--host-record={name},{addr}")
        for addr, name in self.ptrs:
            args.append(f"--ptr-record={reverse_name(addr)},{name}")
        for name, text in self.txt:
            args.append(f"--txt-record={name},{text}")
        if self.servfail:
            if self.servfail_server is None:
                self.servfail_server = ServfailServer()
            for domain in self.servfail:
                args.append(f"--server=/{domain}/127.0.0.1#{self.servfail_server.port}")
        if self.silent:
            if self.silent_server is None:
                self.silent_server = SilentServer()
            for domain in self.silent:
                args.append(f"--server=/{domain}/127.0.0.1#{self.silent_server.port}")
        return args

    def start(self, timeout=10):
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self.logfile, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited {self.proc.returncode}: {self.log_text()}")
            if query_rcode(self.port, f"probe.{ZONE}", 1, timeout=0.2,
                           address=self.address) is not None:
                return self
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"dnsmasq did not answer within {timeout}s: {self.log_text()}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self, mx=None, hosts=None, null_mx=None, servfail=None):
        """Same port, new records."""
        self.stop()
        if mx is not None:
            self.mx = list(mx)
        if hosts is not None:
            self.hosts = list(hosts)
        if null_mx is not None:
            self.null_mx = list(null_mx)
        if servfail is not None:
            self.servfail = list(servfail)
        return self.start()

    def close(self):
        self.stop()
        if self.servfail_server is not None:
            self.servfail_server.stop()
            self.servfail_server = None
        if self.silent_server is not None:
            self.silent_server.stop()
            self.silent_server = None
        try:
            os.unlink(self.logfile.name)
        except OSError:
            pass

    def log_text(self):
        try:
            with open(self.logfile.name, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""
