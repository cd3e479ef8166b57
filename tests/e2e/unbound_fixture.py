"""DNSSEC for the end-to-end tests: test zones signed with ldns-keygen and
ldns-signzone, served by one unbound (authoritative, auth-zone), and a
second unbound on its own free port that validates them against trust
anchors in its own temporary directory: the validating resolver Postern
points dns_servers at (smtp_dns_support_level = dnssec). Nothing here
reads or touches the system's unbound or its configuration, and every
query stays on 127.0.0.1: the resolver's only upstream is the authority,
even for the root, which refuses what it does not serve.

    zones = [Zone("dane.test", ["@ MX 10 mx", "mx A 127.0.0.61", ...]),
             Zone("plain.test", [...], signed=False),
             Zone("bogus.test", [...], tamper=lambda text: ...)]
    dns = ValidatingResolver(zones, tmpdir).start(); dns.servers; dns.close()

A signed zone gets a trust anchor (its DS); tamper() changes the signed
zone text after signing, so its signatures no longer hold ("bogus": the
resolver answers SERVFAIL). An unsigned zone has no anchor: answers are
"insecure", without the AD bit.
"""

import shutil
import subprocess
import time
from pathlib import Path

from dnsmasq_fixture import build_query, free_udp_tcp_port
from postern_instance import stop_process
import socket
import struct

UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"
LDNS_KEYGEN = shutil.which("ldns-keygen") or "/usr/bin/ldns-keygen"
LDNS_SIGNZONE = shutil.which("ldns-signzone") or "/usr/bin/ldns-signzone"


class Zone:
    def __init__(self, name, records, signed=True, tamper=None):
        self.name = name.rstrip(".")
        self.records = list(records)
        self.signed = signed
        self.tamper = tamper


def _run(argv, cwd):
    p = subprocess.run(argv, cwd=cwd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise AssertionError(f"{argv[0]} failed: {p.stderr.decode(errors='replace')}")
    return p.stdout.decode()


def query_flags(port, name, qtype):
    """(rcode, AD bit) of a query with the AD bit set, or None."""
    qid, pkt = build_query(name, qtype)
    pkt = pkt[:3] + bytes([pkt[3] | 0x20]) + pkt[4:]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.sendto(pkt, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(65536)
        except socket.timeout:
            return None
    flags = struct.unpack(">H", data[2:4])[0]
    return flags & 0xF, bool(flags & 0x20)


class ValidatingResolver:
    def __init__(self, zones, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.zones = zones
        self.auth_port = free_udp_tcp_port()
        self.port = free_udp_tcp_port()
        while self.port == self.auth_port:
            self.port = free_udp_tcp_port()
        self.procs = []

    @property
    def servers(self):
        return f"127.0.0.1:{self.port}"

    # --- zones ------------------------------------------------------------

    def _zone_file(self, zone):
        origin = zone.name + "."
        lines = [f"$ORIGIN {origin}", "$TTL 300",
                 f"@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 300",
                 f"@ IN NS ns.{origin}", "ns IN A 127.0.0.1"]
        lines += [r if " IN " in f" {r} " else _with_class(r) for r in zone.records]
        path = self.dir / f"{zone.name}.zone"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _sign(self, zone, path):
        key = _run([LDNS_KEYGEN, "-a", "ECDSAP256SHA256", "-k", zone.name + "."],
                   self.dir).strip()
        _run([LDNS_SIGNZONE, "-f", str(path) + ".signed", str(path), key], self.dir)
        signed = Path(str(path) + ".signed")
        if zone.tamper is not None:
            signed.write_text(zone.tamper(signed.read_text()))
        anchor = self.dir / f"{zone.name}.anchor"
        shutil.copy(self.dir / f"{key}.ds", anchor)
        return signed, anchor

    # --- unbound ------------------------------------------------------------

    def _server_block(self, name, port, extra):
        return "\n".join([
            "server:",
            "  interface: 127.0.0.1", f"  port: {port}", "  do-ip6: no",
            "  do-daemonize: no", '  chroot: ""', '  username: ""',
            f'  directory: "{self.dir}"', f'  pidfile: "{self.dir}/{name}.pid"',
            f'  logfile: "{self.dir}/{name}.log"', "  use-syslog: no", "  verbosity: 1",
            "  access-control: 127.0.0.0/8 allow", '  auto-trust-anchor-file: ""',
            "  num-threads: 1", "  so-reuseport: no",
            # unbound answers NXDOMAIN for RFC 6761 names such as "test."
            # unless told not to.
            '  local-zone: "test." nodefault',
            *extra, ""])

    def _write_configs(self):
        auth, anchors = [], []
        for zone in self.zones:
            path = self._zone_file(zone)
            if zone.signed:
                path, anchor = self._sign(zone, path)
                anchors.append(f'  trust-anchor-file: "{anchor}"')
            auth += ["auth-zone:", f'  name: "{zone.name}."', f'  zonefile: "{path}"',
                     "  for-downstream: yes", "  for-upstream: no", ""]
        (self.dir / "auth.conf").write_text(
            self._server_block("auth", self.auth_port, ['  module-config: "iterator"'])
            + "\n".join(auth))
        stubs = []
        for name in [z.name + "." for z in self.zones] + ["."]:
            stubs += ["stub-zone:", f'  name: "{name}"',
                      f"  stub-addr: 127.0.0.1@{self.auth_port}", ""]
        (self.dir / "resolver.conf").write_text(
            self._server_block("resolver", self.port, [
                '  module-config: "validator iterator"', "  do-not-query-localhost: no",
                "  qname-minimisation: no", "  prefetch: no", "  val-log-level: 2",
                "  harden-dnssec-stripped: yes", "  cache-max-ttl: 5",
                "  cache-max-negative-ttl: 5", *anchors])
            + "\n".join(stubs))

    def _start_one(self, name, port):
        log = open(self.dir / f"{name}.stderr", "wb")
        proc = subprocess.Popen([UNBOUND, "-d", "-c", str(self.dir / f"{name}.conf")],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"unbound ({name}) exited {proc.returncode}: "
                                     f"{self.log_text(name)}")
            if query_flags(port, self.zones[0].name, 6) is not None:
                return
            time.sleep(0.05)
        raise AssertionError(f"unbound ({name}) did not answer: {self.log_text(name)}")

    def start(self):
        self._write_configs()
        try:
            self._start_one("auth", self.auth_port)
            self._start_one("resolver", self.port)
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        for proc in self.procs:
            stop_process(proc)
        self.procs = []

    def log_text(self, name):
        out = []
        for suffix in (".stderr", ".log"):
            try:
                out.append((self.dir / f"{name}{suffix}").read_text(errors="replace")[-3000:])
            except OSError:
                pass
        return "\n".join(out)


def _with_class(record):
    """'name TYPE data' -> 'name IN TYPE data'."""
    owner, rest = record.split(None, 1)
    return f"{owner} IN {rest}"
