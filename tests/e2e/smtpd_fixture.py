"""Helpers for the smtpd end-to-end tests (test_smtpd_*.py): a self-signed
certificate made with the openssl command, crypt(3) SHA-512 hashes for
smtpd_sasl_password_maps, main.cf lines for TLS and AUTH, TLS client
contexts that accept our certificate, a master.cf with an extra
wrapper-mode (port 465 style) listener or without qmgr (so queue files stay
in incoming/ to be read), and conf/master.cf as shipped with its
submission and submissions services uncommented onto free ports.
"""

import base64
import socket
import ssl
import subprocess
import time
from pathlib import Path

from postern_instance import HELO, HOSTNAME, RawSMTP, free_port


def make_cert(directory, cn=HOSTNAME):
    """A self-signed RSA certificate and its key in directory; returns
    (cert path, key path)."""
    directory = Path(directory)
    cert, key = directory / "smtpd-cert.pem", directory / "smtpd-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(cert)],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)
    return cert, key


def crypt_sha512(password, salt="saltsaltsalt1234"):
    """The "$6$..." crypt(3) hash of password."""
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, password], check=True,
                         capture_output=True, text=True, timeout=30).stdout.strip()
    assert out.startswith("$6$"), out
    return out


def main_cf_escape(value):
    """main.cf expands $name: a literal $ is written $$."""
    return value.replace("$", "$$")


def tls_lines(cert, key, level="may"):
    return [f"smtpd_tls_cert_file = {cert}", f"smtpd_tls_key_file = {key}",
            f"smtpd_tls_security_level = {level}"]


def sasl_lines(users):
    """users: {name: password} -> main.cf lines enabling AUTH against an
    inline table of crypt hashes."""
    items = ", ".join(f"{u}={main_cf_escape(crypt_sha512(p))}" for u, p in users.items())
    return ["smtpd_sasl_auth_enable = yes", f"smtpd_sasl_password_maps = inline:{{ {items} }}"]


def client_context():
    """A TLS client context that accepts our self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def plain_response(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def master_cf(port, wrapper_port=None, qmgr=True):
    """The default services plus, optionally, a wrapper-mode smtpd on
    wrapper_port; qmgr=False leaves messages in incoming/."""
    lines = [f"127.0.0.1:{port} inet n - n - - smtpd"]
    if wrapper_port:
        lines.append(f"127.0.0.1:{wrapper_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes")
    lines.append("cleanup unix - - n - 0 cleanup")
    if qmgr:
        lines.append("qmgr fifo n - n 300 1 qmgr")
    lines += ["local unix - n n - - local", "bounce unix - - n - 0 bounce"]
    return "\n".join(lines) + "\n"


def shipped_master_cf(port, sub_port=None, subs_port=None, extra_sub=(), extra_subs=()):
    """conf/master.cf as shipped, with smtp on 127.0.0.1:port and, when
    their ports are given, the commented "any client" submission and
    submissions services uncommented onto 127.0.0.1:sub_port and
    127.0.0.1:subs_port; extra_* are more -o lines for them (the last
    setting of a parameter wins)."""
    conf = Path(__file__).resolve().parents[2] / "conf" / "master.cf"
    out, active = [], None
    for line in conf.read_text().splitlines():
        words = line.split()
        if words[:2] == ["smtp", "inet"]:
            line = line.replace("smtp", f"127.0.0.1:{port}", 1)
        elif words[:2] in (["#submission", "inet"], ["#submissions", "inet"]):
            name = words[0][1:]
            new_port = sub_port if name == "submission" else subs_port
            if new_port:
                active = name
                line = line[1:].replace(name, f"127.0.0.1:{new_port}", 1)
        elif active and line.startswith("#  -o"):
            line = line[1:]
        elif active:
            out += ["  " + l for l in (extra_sub if active == "submission" else extra_subs)]
            active = None
        out.append(line)
    return "\n".join(out) + "\n"


class TLSRaw(RawSMTP):
    """A raw SMTP conversation that can switch to TLS in place (STARTTLS)
    or start in TLS (wrapper mode); every read has a deadline."""

    def __init__(self, port, wrapped=False, timeout=15.0, source=None):
        super().__init__(port, source=source, timeout=timeout)
        self.timeout = timeout
        if wrapped:
            self.sock = client_context().wrap_socket(self.sock)

    def starttls(self):
        self.sock = client_context().wrap_socket(self.sock)
        return self.sock

    @classmethod
    def logged_in(cls, port, user, password):
        """A session past the banner, EHLO, STARTTLS, EHLO again and AUTH
        PLAIN as user, each answered as it must be."""
        c = cls(port)
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd("STARTTLS")[0] == 220
        c.starttls()
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"AUTH PLAIN {plain_response(user, password)}")[0] == 235
        return c

    def nothing_pending(self, wait=0.5):
        """True when no byte arrives within wait seconds."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1)
        except (socket.timeout, ssl.SSLWantReadError):
            return True
        finally:
            self.sock.settimeout(self.timeout)
        self.buf += data
        return False


def elapsed(fn):
    """(result, seconds) of fn()."""
    t = time.monotonic()
    r = fn()
    return r, time.monotonic() - t


__all__ = ["make_cert", "crypt_sha512", "tls_lines", "sasl_lines", "client_context",
           "plain_response", "master_cf", "shipped_master_cf", "TLSRaw", "elapsed", "free_port",
           "main_cf_escape"]
