"""Milter peers for the e2e tests, all on 127.0.0.1:

FakeMilter   a milter written here on raw sockets (the Sendmail milter
             protocol, libmilter's mfdef.h constants), one thread per MTA
             connection. It records every command and macro it gets and
             answers as the test scripts it: any reply or modification at
             any stage, and the things no real milter does: garbage, an
             oversize packet, silence beyond the MTA's timeout, closing in
             the middle of the body.
OpenDKIM     the real opendkim (-f -x CONF) with its own configuration file,
             key (opendkim-genkey) and socket on a free port, in a temp dir.
PyMilter     tests/e2e/pymilter_script.py (python3-milter, on libmilter) in
             its own process: it exercises each action and records the
             macros it saw into a JSON file.
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from postern_instance import free_port, wait_until

HERE = Path(__file__).resolve().parent
OPENDKIM = shutil.which("opendkim", path="/usr/sbin:/usr/bin") or "/usr/sbin/opendkim"
OPENDKIM_GENKEY = shutil.which("opendkim-genkey", path="/usr/sbin:/usr/bin") or "/usr/sbin/opendkim-genkey"
PYTHON = "/usr/bin/python3"   # Debian's, which has python3-milter and python3-dkim

# --- the protocol (libmilter's mfdef.h) ---------------------------------------

SMFIF_ADDHDRS, SMFIF_CHGBODY, SMFIF_ADDRCPT, SMFIF_DELRCPT = 0x01, 0x02, 0x04, 0x08
SMFIF_CHGHDRS, SMFIF_QUARANTINE, SMFIF_CHGFROM, SMFIF_ADDRCPT_PAR = 0x10, 0x20, 0x40, 0x80
SMFIF_SETSYMLIST = 0x100
ALL_ACTIONS = 0x1FF

SMFIP_NOCONNECT, SMFIP_NOHELO, SMFIP_NOMAIL, SMFIP_NORCPT = 0x1, 0x2, 0x4, 0x8
SMFIP_NOBODY, SMFIP_NOHDRS, SMFIP_NOEOH, SMFIP_NR_HDR = 0x10, 0x20, 0x40, 0x80
SMFIP_NOUNKNOWN, SMFIP_NODATA, SMFIP_SKIP, SMFIP_RCPT_REJ = 0x100, 0x200, 0x400, 0x800
SMFIP_NR_CONN, SMFIP_NR_HELO, SMFIP_NR_MAIL, SMFIP_NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
SMFIP_NR_DATA, SMFIP_NR_UNKN, SMFIP_NR_EOH, SMFIP_NR_BODY = 0x10000, 0x20000, 0x40000, 0x80000
SMFIP_HDR_LEADSPC = 0x100000

# MTA commands by letter, and the stage names tests use.
STAGES = {b"C": "connect", b"H": "helo", b"M": "mail", b"R": "rcpt", b"T": "data",
          b"L": "header", b"N": "eoh", b"B": "body", b"E": "eom", b"U": "unknown",
          b"A": "abort", b"Q": "quit", b"K": "quit_nc", b"O": "optneg", b"D": "macro"}
# Commands that get no reply.
NO_REPLY = {"abort", "quit", "quit_nc", "macro"}
# Which SMFIP_NR_* flag stops the reply to a stage.
NR_FLAG = {"connect": SMFIP_NR_CONN, "helo": SMFIP_NR_HELO, "mail": SMFIP_NR_MAIL,
           "rcpt": SMFIP_NR_RCPT, "data": SMFIP_NR_DATA, "unknown": SMFIP_NR_UNKN,
           "eoh": SMFIP_NR_EOH, "body": SMFIP_NR_BODY, "header": SMFIP_NR_HDR}
# Macro stages as SMFIC_OPTNEG lists them (SMFIM_*).
SMFIM = {"connect": 0, "helo": 1, "mail": 2, "rcpt": 3, "data": 4, "eom": 5, "eoh": 6}


def packet(cmd, data=b""):
    """One protocol packet: 32-bit length (command byte included), command, data."""
    if isinstance(cmd, str):
        cmd = cmd.encode()
    return struct.pack(">I", len(data) + 1) + cmd + data


def z(*strings):
    """NUL-terminated strings, concatenated."""
    return b"".join((s.encode() if isinstance(s, str) else s) + b"\0" for s in strings)


# Replies, for scripts.
CONTINUE = packet("c")
ACCEPT = packet("a")
REJECT = packet("r")
TEMPFAIL = packet("t")
DISCARD = packet("d")
SKIP = packet("s")
PROGRESS = packet("p")


def replycode(text):
    return packet("y", z(text))


def quarantine(reason):
    return packet("q", z(reason))


def add_header(name, value):
    return packet("h", z(name, value))


def insert_header(index, name, value):
    return packet("i", struct.pack(">I", index) + z(name, value))


def change_header(index, name, value):
    """value "" deletes the index-th header of that name (1 = the first)."""
    return packet("m", struct.pack(">I", index) + z(name, value))


def add_rcpt(addr, args=None):
    return packet("2", z(addr, args)) if args is not None else packet("+", z(addr))


def del_rcpt(addr):
    return packet("-", z(addr))


def change_from(addr, args=None):
    return packet("e", z(addr) + (z(args) if args else b""))


def replace_body(chunk):
    return packet("b", chunk)


def split_z(data):
    """NUL-terminated strings of a packet's data (a last one unterminated kept)."""
    parts = data.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "replace") for p in parts]


class Event:
    """One command the MTA sent: stage name, raw data, and the macros the MTA
    sent for this stage (SMFIC_MACRO with the command's letter)."""

    __slots__ = ("stage", "data", "macros", "conn")

    def __init__(self, stage, data, macros, conn):
        self.stage, self.data, self.macros, self.conn = stage, data, dict(macros), conn

    def args(self):
        return split_z(self.data)

    def __repr__(self):
        return f"Event({self.stage}, {self.data[:60]!r}, conn={self.conn})"


class FakeMilter:
    """A scripted milter on 127.0.0.1:PORT.

    script(event) is called for every command that expects a reply and
    returns the bytes to answer (None: SMFIR_CONTINUE; b"": nothing at
    all). It may also sleep, or raise CloseNow to hang up. Everything the
    MTA sent is in .events (macros by stage in .macros_at(stage)).
    negotiate: (version, actions, protocol flags, {stage: "macro names"}),
    or bytes to answer SMFIC_OPTNEG with verbatim.
    """

    class CloseNow(Exception):
        pass

    def __init__(self, script=None, version=6, actions=ALL_ACTIONS, protocol=0, symlists=None,
                 optneg_reply=None, unix_path=None, port=0):
        self.script = script or (lambda ev: None)
        self.version, self.actions, self.protocol = version, actions, protocol
        self.symlists = symlists or {}
        self.optneg_reply = optneg_reply
        self.events = []
        self.offered = []          # (version, actions, protocol) of each SMFIC_OPTNEG
        self.connections = 0
        self.closed = 0            # connections that ended (EOF or quit)
        self.lock = threading.Lock()
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(str(unix_path))
            self.spec = f"unix:{unix_path}"
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", port))
            self.port = self.sock.getsockname()[1]
            self.spec = f"inet:127.0.0.1:{self.port}"
        self.sock.listen(64)
        self.running = True
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self.acceptor.start()

    # observing

    def stages(self, conn=None):
        with self.lock:
            return [e.stage for e in self.events if conn is None or e.conn == conn]

    def of(self, stage):
        with self.lock:
            return [e for e in self.events if e.stage == stage]

    def since(self, n):
        """Events after the first n (a test's own, when it noted len(events))."""
        with self.lock:
            return list(self.events[n:])

    def wait_stage(self, stage, count=1, timeout=20):
        return wait_until(lambda: (lambda l: l if len(l) >= count else None)(self.of(stage)),
                          timeout, what=f"{count} milter {stage} event(s)")

    def macros_at(self, stage):
        """Macros the MTA sent for the last event of that stage."""
        evs = self.of(stage)
        return evs[-1].macros if evs else {}

    # serving

    def _accept_loop(self):
        self.sock.settimeout(0.2)
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
            t = threading.Thread(target=self._serve, args=(conn, n), daemon=True)
            self.threads.append(t)
            t.start()

    @staticmethod
    def _read_exact(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _negotiate(self, conn, data):
        self.offered.append(struct.unpack(">III", data[:12]))
        if self.optneg_reply is not None:
            conn.sendall(self.optneg_reply)
            return
        lists = b"".join(struct.pack(">I", SMFIM[st]) + z(names)
                         for st, names in self.symlists.items())
        conn.sendall(packet("O", struct.pack(">III", self.version, self.actions,
                                             self.protocol) + lists))

    def _serve(self, conn, n):
        macros = {}   # by command letter: what the last SMFIC_MACRO for it said
        conn.settimeout(120)
        try:
            while self.running:
                (length,) = struct.unpack(">I", self._read_exact(conn, 4))
                body = self._read_exact(conn, length)
                cmd, data = body[:1], body[1:]
                stage = STAGES.get(cmd, "?" + cmd.decode("latin-1"))
                if stage == "optneg":
                    self._negotiate(conn, data)
                    continue
                if stage == "macro":
                    parts = split_z(data[1:])
                    macros[data[:1]] = dict(zip(parts[0::2], parts[1::2]))
                    continue
                ev = Event(stage, data, macros.get(cmd, {}), n)
                with self.lock:
                    self.events.append(ev)
                if stage in ("quit", "quit_nc"):
                    break
                if stage in NO_REPLY:
                    continue
                if NR_FLAG.get(stage, 0) & self.protocol:
                    continue
                answer = self.script(ev)
                conn.sendall(CONTINUE if answer is None else answer)
        except (EOFError, OSError, self.CloseNow, struct.error):
            pass
        finally:
            with self.lock:
                self.closed += 1
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass
        self.acceptor.join(timeout=2)


def closed_port():
    """A milter endpoint where nobody listens: the milter is down. Its
    port is the part after the last colon (FakeMilter(port=...) brings
    it up later)."""
    return f"inet:127.0.0.1:{free_port()}"


# --- OpenDKIM -------------------------------------------------------------------


class OpenDKIM:
    """The real opendkim, in the foreground (-f) with its own configuration
    file (-x), signing for DOMAIN with selector SELECTOR and a key made by
    opendkim-genkey, and verifying (Mode sv), on inet:PORT@127.0.0.1."""

    DOMAIN = "dkim.test.example"
    SELECTOR = "pt"

    def __init__(self, extra_conf=(), domain=None):
        if domain:
            self.DOMAIN = domain   # this signer's, instead of the class's
        self.dir = Path(tempfile.mkdtemp(prefix="pe2e-dkim.", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        subprocess.run([OPENDKIM_GENKEY, "-b", "1024", "-d", self.DOMAIN, "-s", self.SELECTOR,
                        "-D", str(self.dir)], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.key = self.dir / f"{self.SELECTOR}.private"
        self.txt = (self.dir / f"{self.SELECTOR}.txt").read_text()
        self.port = free_port()
        self.spec = f"inet:127.0.0.1:{self.port}"
        self.log = self.dir / "opendkim.log"
        # Verifying looks the key up here, never in DNS.
        self.keys = self.dir / "test-keys"
        self.keys.write_bytes(f"{self.SELECTOR}._domainkey.{self.DOMAIN} ".encode()
                              + self.public_key_record() + b"\n")
        conf = [
            f"Domain {self.DOMAIN}",
            f"Selector {self.SELECTOR}",
            f"KeyFile {self.key}",
            f"Socket inet:{self.port}@127.0.0.1",
            "Mode sv",
            "Canonicalization relaxed/simple",
            "SignatureAlgorithm rsa-sha256",
            f"PidFile {self.dir}/opendkim.pid",
            "Syslog no",
            "LogWhy yes",
            "InternalHosts 127.0.0.1",
            f"TestPublicKeys {self.keys}",
            "Nameservers 127.0.0.9",   # nobody: no lookup leaves the machine
            "DNSTimeout 1",
            "AlwaysAddARHeader yes",
            "AuthservID verifier.test.example",
            "UMask 022",
            # The key lives under /tmp, which opendkim otherwise refuses.
            "RequireSafeKeys false",
            *extra_conf,
        ]
        if os.geteuid() == 0:
            conf.append("UserID root")   # opendkim otherwise refuses to run as root
        self.conf = self.dir / "opendkim.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.out = open(self.log, "wb")
        self.proc = subprocess.Popen([OPENDKIM, "-f", "-x", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_listening("127.0.0.1", self.port, 20, self.proc)
        except AssertionError:
            self.close()
            raise

    def public_key_record(self):
        """The TXT record text (p=...) opendkim-genkey wrote, unquoted."""
        parts = []
        for piece in self.txt.split('"')[1::2]:
            parts.append(piece)
        return "".join(parts).encode()

    def dnsfunc(self, name, timeout=5):
        """For dkim.verify(dnsfunc=...): our selector's record, nothing else."""
        if isinstance(name, bytes):
            name = name.decode()
        if name.rstrip(".") == f"{self.SELECTOR}._domainkey.{self.DOMAIN}":
            return self.public_key_record()
        return None

    def log_text(self):
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_listening(host, port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"peer exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{host}:{port} does not accept connections")
            time.sleep(0.05)


# --- a libmilter milter in Python ------------------------------------------------


class PyMilter:
    """pymilter_script.py in its own process: a libmilter milter that takes
    its orders from the message (X-Milter-Do: headers) and records the
    macros of each stage in RECORD (JSON lines), unless record is False;
    rcpt_rej: it asks to hear rejected recipients too."""

    def __init__(self, record=True, rcpt_rej=False):
        self.dir = Path(tempfile.mkdtemp(prefix="pe2e-pymilter.", dir="/tmp"))
        self.port = free_port()
        self.spec = f"inet:127.0.0.1:{self.port}"
        self.record = self.dir / "record.jsonl"
        self.logfile = self.dir / "pymilter.log"
        self.out = open(self.logfile, "wb")
        self.proc = subprocess.Popen([PYTHON, str(HERE / "pymilter_script.py"),
                                      f"inet:{self.port}@127.0.0.1",
                                      str(self.record) if record else "-",
                                      *(["rcpt_rej"] if rcpt_rej else [])],
                                     stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_listening("127.0.0.1", self.port, 20, self.proc)
        except AssertionError:
            self.close()
            raise

    def records(self):
        try:
            text = self.record.read_text()
        except FileNotFoundError:
            return []
        # The milter may be writing a record as it is read: only complete
        # lines (up to the last newline) are records yet.
        text = text[:text.rfind("\n") + 1]
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_records(self, predicate, timeout=20, what="pymilter records"):
        return wait_until(lambda: [r for r in self.records() if predicate(r)] or None,
                          timeout, what=what)

    def log_text(self):
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)
