"""SMTP servers for the remote-delivery tests, all on 127.0.0.0/8:

Receiver     Python's aiosmtpd in a thread: keeps every message it gets,
             counts connections, can answer RCPT per address (250/450/550),
             offers STARTTLS with a certificate from make_cert(), and AUTH
             (PLAIN, LOGIN, CRAM-MD5) checked against its own users.
SmtpSink     Postfix's smtp-sink, a fast pipelining receiver.
HostileServer  a raw socket server that runs a script per connection: the
             malformed, oversized or truncated replies a real server never
             sends, and that remote must survive.
make_cert()  a CA and a server certificate for a host name, made with the
             openssl command.
"""

import hmac
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def free_port_on(host, *others):
    """A port nobody listens on at host, nor at the other addresses (where a
    test expects "Connection refused")."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        try:
            for other in others:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as o:
                    o.bind((other, port))
        except OSError:
            continue
        return port
    raise AssertionError(f"no port free on {host} and {others}")


def wait_listening(host, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{host}:{port} does not accept connections")
            time.sleep(0.05)


# --- certificates ------------------------------------------------------------


def make_cert(directory, hostname, san=None):
    """A fresh CA and a certificate for hostname signed by it, in directory.
    san: the subjectAltName value (default DNS:hostname; "IP:127.0.0.1"
    for an address). Returns (ca_file, cert_file, key_file)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = d / "ca.key", d / "ca.crt"
    key, csr, crt = d / "server.key", d / "server.csr", d / "server.crt"
    ext = d / "ext.cnf"
    ext.write_text(f"subjectAltName = {san or 'DNS:' + hostname}\n")

    def run(*argv):
        subprocess.run(["openssl", *argv], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
        f"/CN=Postern test CA {os.getpid()}", "-keyout", str(ca_key), "-out", str(ca_crt))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={hostname}",
        "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return str(ca_crt), str(crt), str(key)


def make_self_signed(directory, hostname):
    """A self-signed certificate for hostname (no CA). Returns (cert, key)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key, crt = d / "self.key", d / "self.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={hostname}", "-addext", f"subjectAltName = DNS:{hostname}",
                    "-keyout", str(key), "-out", str(crt)], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    return str(crt), str(key)


def server_tls_context(cert_file, key_file, client_ca=None, sni_seen=None):
    """client_ca: ask for a client certificate and check it against this
    CA file; sni_seen: a list the SNI name of every handshake goes to."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(client_ca)
    if sni_seen is not None:
        ctx.sni_callback = lambda sslobj, name, c: sni_seen.append(name) and None
    return ctx


def _tls_facts(session):
    """What a test may ask of a message's TLS session."""
    extra = session.ssl or {}
    obj = extra.get("ssl_object") if isinstance(extra, dict) else None
    if obj is None:
        return {}
    peer = obj.getpeercert() or {}
    subject = dict(x[0] for x in peer.get("subject", ()))
    return dict(tls_version=obj.version(), cipher=obj.cipher()[0],
                tls_resumed=obj.session_reused, client_cn=subject.get("commonName"))


# --- aiosmtpd ------------------------------------------------------------------


class _Handler:
    def __init__(self, owner):
        self.owner = owner

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if session.ssl is None:
            self.owner._count_connection()
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        self.owner._count_connection()
        return f"250 {server.hostname}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.owner.rcpt_replies.get(address.lower())
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply or "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.owner._store(dict(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            mail_options=list(envelope.mail_options),
            rcpt_options=list(envelope.rcpt_options),
            data=envelope.content,
            tls=session.ssl is not None,
            helo=session.host_name,
            auth_user=(session.login_data.decode() if isinstance(session.login_data, bytes)
                       else session.login_data) if session.authenticated else None,
            peer=session.peer,
            received_at=time.time(),
            **_tls_facts(session),
        ))
        return "250 2.0.0 Ok: queued as " + f"R{len(self.owner.messages)}"


class _AuthHandler(_Handler):
    """_Handler with CRAM-MD5 (RFC 2195), which aiosmtpd lacks: a fresh
    challenge, the answer checked against the user's password."""

    async def auth_CRAM__MD5(self, server, args):
        challenge = f"<{secrets.token_hex(8)}@{server.hostname}>".encode()
        answer = await server.challenge_auth(challenge)
        if not isinstance(answer, bytes) or b" " not in answer:
            return AuthResult(success=False, handled=False)
        user, digest = answer.rsplit(b" ", 1)
        password = self.owner.users.get(user.decode("utf-8", "replace"))
        ok = password is not None and hmac.compare_digest(
            hmac.new(password.encode(), challenge, "md5").hexdigest().encode(), digest)
        self.owner._note_auth("CRAM-MD5", user.decode("utf-8", "replace"), None, ok)
        return AuthResult(success=ok, handled=False, auth_data=LoginPassword(user, b""))


class Receiver:
    """aiosmtpd on host:port. rcpt_replies maps a lower-case address to the
    reply for its RCPT (e.g. "450 4.2.0 Try later"); tls=(cert, key) offers
    STARTTLS (client_ca: asking for a client certificate; every message
    notes tls_version, cipher, tls_resumed and client_cn, and
    every message its received_at wall clock time; sni_names lists
    the SNI of each handshake); size_limit is the SIZE it announces (and
    enforces); smtputf8 (aiosmtpd's Controller default) offers SMTPUTF8
    (RFC 6531). users={name: password} offers AUTH (mechanisms: those named,
    of PLAIN, LOGIN, CRAM-MD5; only after STARTTLS unless auth_require_tls
    is False) and checks every attempt, noting it in auth_attempts as
    (mechanism, user, password, ok); auth_required refuses MAIL before AUTH."""

    MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")

    def __init__(self, host, port=None, rcpt_replies=None, tls=None, size_limit=None,
                 smtputf8=True, users=None, mechanisms=MECHANISMS, auth_require_tls=True,
                 auth_required=None, client_ca=None):
        self.host = host
        self.port = port or free_port_on(host)
        self.rcpt_replies = {k.lower(): v for k, v in (rcpt_replies or {}).items()}
        self.messages = []
        self.connections = 0
        self.users = dict(users or {})
        self.auth_attempts = []
        self.sni_names = []     # the SNI name of each TLS handshake (None: none sent)
        self._lock = threading.Lock()
        kwargs = {}
        if size_limit is not None:
            kwargs["data_size_limit"] = size_limit
        kwargs["enable_SMTPUTF8"] = smtputf8
        if tls is not None:
            kwargs["tls_context"] = server_tls_context(*tls, client_ca=client_ca,
                                                       sni_seen=self.sni_names)
            kwargs["require_starttls"] = False
        handler = _Handler(self)
        if users is not None:
            handler = _AuthHandler(self)
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_require_tls"] = auth_require_tls
            kwargs["auth_required"] = auth_required if auth_required is not None else True
            kwargs["auth_exclude_mechanism"] = [m for m in self.MECHANISMS if m not in mechanisms]
        self.controller = Controller(handler, hostname=host, port=self.port, **kwargs)

    def _note_auth(self, mechanism, user, password, ok):
        with self._lock:
            self.auth_attempts.append((mechanism, user, password, ok))

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        ok = self.users.get(user) == password
        self._note_auth(mechanism, user, password, ok)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def _count_connection(self):
        with self._lock:
            self.connections += 1

    def _store(self, msg):
        with self._lock:
            self.messages.append(msg)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        try:
            self.controller.stop()
        except Exception:   # already stopped, or the loop died with a test
            pass

    def wait_messages(self, count=1, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver {self.host}:{self.port} got "
                                     f"{len(self.messages)} of {count} messages")
            time.sleep(0.05)
        return self.messages


# --- smtp-sink ------------------------------------------------------------------


class SmtpSink:
    """Postfix's smtp-sink on host:port; -c prints a running message count,
    -d dumps every message to a file in dump_dir."""

    def __init__(self, host, port=None, backlog=100, dump_dir=None):
        self.host, self.port = host, port or free_port_on(host)
        self.dump_dir = dump_dir
        self.out = tempfile.TemporaryFile()
        argv = [SMTP_SINK, "-u", "root", "-c"]
        if dump_dir is not None:
            argv += ["-d", str(Path(dump_dir) / "%M%S.")]
        argv += [f"{host}:{self.port}", str(backlog)]
        self.argv = argv
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT)
        wait_listening(self.host, self.port)
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def dumped(self):
        if self.dump_dir is None:
            return []
        return sorted(p for p in Path(self.dump_dir).iterdir() if p.is_file())


# --- hostile servers -------------------------------------------------------------


class Conn:
    """What a HostileServer script gets: a connected socket with helpers."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.lines = []

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def read_line(self, timeout=30):
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("client closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.rstrip(b"\r").decode("utf-8", "replace")
        self.lines.append(line)
        return line

    def expect(self, prefix, timeout=30):
        line = self.read_line(timeout)
        assert line.upper().startswith(prefix.upper()), (prefix, line)
        return line

    def wait_close(self, timeout=30):
        """Read (and ignore) whatever comes until the client closes."""
        self.sock.settimeout(timeout)
        while self.sock.recv(65536):
            pass

    def read_data(self, timeout=30):
        """The message after DATA's 354, up to the final dot."""
        out = []
        while True:
            line = self.read_line(timeout)
            if line == ".":
                return out
            out.append(line)

    def serve(self, final="250 2.0.0 Ok: queued", messages=None, on_mail=None):
        """A plain, well-behaved session after the greeting and EHLO: answer
        MAIL, RCPT, DATA (collecting each message's lines into messages),
        RSET and QUIT until the client leaves. on_mail(conn) may take over a
        MAIL command instead (return True when it did)."""
        while True:
            line = self.read_line()
            verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
            if verb == "MAIL" and on_mail is not None and on_mail(self):
                continue
            if verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                self.send("250 2.0.0 Ok\r\n")
            elif verb == "DATA":
                self.send("354 End data with <CR><LF>.<CR><LF>\r\n")
                data = self.read_data()
                if messages is not None:
                    messages.append(data)
                self.send(final + "\r\n")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye\r\n")
                return
            else:
                self.send("502 5.5.2 Error: command not recognized\r\n")

    def greet_and_ehlo(self, extensions=("PIPELINING",)):
        self.send("220 hostile.test ESMTP\r\n")
        self.expect("EHLO")
        ext = list(extensions)
        lines = ["250-hostile.test"] + [f"250-{e}" for e in ext[:-1]] + \
            ([f"250 {ext[-1]}"] if ext else [])
        if not ext:
            lines = ["250 hostile.test"]
        self.send("".join(l + "\r\n" for l in lines))


class HostileServer:
    """Accepts connections on host:port and runs script(conn) for each, in
    its own thread; exceptions in a script end only that connection."""

    def __init__(self, host, script, port=None):
        self.host = host
        self.script = script
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, port or 0))
        self.port = self.lsock.getsockname()[1]
        self.lsock.listen(50)
        self.lsock.settimeout(0.2)
        self.connections = 0
        self.conns = []         # every Conn, live: .lines is its transcript so far
        self.transcripts = []   # the transcripts of finished connections
        self._stop = threading.Event()
        self._threads = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                sock, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock):
        conn = Conn(sock)
        self.conns.append(conn)
        try:
            self.script(conn)
        except Exception:   # the client hung up or misbehaved: that is the point
            pass
        finally:
            self.transcripts.append(conn.lines)
            try:
                sock.close()
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.lsock.close()
        # Wake scripts blocked on a connection the client keeps open.
        for conn in self.conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)
