"""Network tables in a running instance: hosted domains and mailboxes from
one SQL database (this session's private MariaDB), a database that goes
down (a temporary failure, then mail flows again without a restart of
Postern), and hostile tcp: and socketmap: servers (garbage, over-long
replies, no answer, a close mid-reply, NUL bytes): each a temporary
failure with a warning, never a crash, and the next lookup works.
"""

import os
import socket
import socketserver
import subprocess
import threading
import time

import pytest

from postern_instance import BUILD, SENDER, crlf, simple_message, wait_until
from table_servers import mariadb  # noqa: F401
from tables_fixture import wait_maildir

POSTMAP = BUILD / "bin" / "postmap"
ROOT = os.geteuid() == 0
VUID = 5000 if ROOT else os.getuid()
VGID = 5000 if ROOT else os.getgid()


def sql_hosted_instance(make_instance, mariadb):
    inst = make_instance(start=False)
    os.chmod(inst.root, 0o755)
    base = inst.root / "vmail"
    base.mkdir()
    os.chown(base, VUID, VGID)
    domains = inst.etc / "vdomains.cf"
    domains.write_text(mariadb.cf("query = SELECT domain FROM domains WHERE domain = '%s'",
                                  "retry_interval = 1"))
    mailboxes = inst.etc / "vmailbox.cf"
    mailboxes.write_text(mariadb.cf(
        "query = SELECT maildir FROM mailbox WHERE email = '%s' AND active = 1",
        "domain = sqlhosted.example", "retry_interval = 1"))
    inst.append_main_cf(
        f"virtual_mailbox_domains = proxy:mysql:{domains}",
        f"virtual_mailbox_maps = proxy:mysql:{mailboxes}",
        f"virtual_mailbox_base = {base}",
        f"virtual_uid_maps = static:{VUID}",
        f"virtual_gid_maps = static:{VGID}",
        "lookup_server_timeout = 5s",
        *([] if ROOT else ["virtual_minimum_uid = 0"]),
    )
    inst.start()
    return inst, base


def test_sql_hosted_domains_and_mailboxes(make_instance, mariadb):
    inst, base = sql_hosted_instance(make_instance, mariadb)
    with inst.smtp() as s:
        s.ehlo()
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        assert s.rcpt("anna@sqlhosted.example") == (250, b"2.1.5 Ok")
        assert s.rcpt("Ben@SQLhosted.example") == (250, b"2.1.5 Ok")
        assert s.rcpt("nobody@sqlhosted.example") == (
            550, b"5.1.1 <nobody@sqlhosted.example>: Recipient address rejected: "
                 b"User unknown in virtual mailbox table")
        code, resp = s.data(crlf(simple_message("from sql")))
        assert code == 250, resp
    [anna] = wait_maildir(base / "sqlhosted.example" / "anna")
    [ben] = wait_maildir(base / "sqlhosted.example" / "ben")
    assert b"Subject: from sql" in anna.read_bytes()
    assert b"delivered-to: ben@sqlhosted.example" in ben.read_bytes().lower()
    inst.wait_log(r"to=<anna@sqlhosted\.example>, relay=virtual, .*status=sent "
                  r"\(delivered to maildir\)$", program="virtual")


def test_database_down_is_a_temporary_failure_until_it_is_back(make_instance, mariadb):
    inst, base = sql_hosted_instance(make_instance, mariadb)
    with inst.smtp() as s:
        s.ehlo()
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        assert s.rcpt("anna@sqlhosted.example") == (250, b"2.1.5 Ok")
    mariadb.stop()
    try:
        with inst.smtp() as s:
            s.ehlo()
            assert s.mail(SENDER) == (250, b"2.1.0 Ok")
            code, text = s.rcpt("anna@sqlhosted.example")
            assert code in (450, 451) and b"4.3.0" in text, (code, text)
        inst.wait_log(r"^warning: connect to mysql server unix:.*mysqld\.sock: ",
                      program="smtpd")
    finally:
        mariadb.restart()
    # Same instance, same smtpd processes: the next lookup reconnects.
    with inst.smtp() as s:
        s.ehlo()
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        assert s.rcpt("anna@sqlhosted.example") == (250, b"2.1.5 Ok")
        code, resp = s.data(crlf(simple_message("after the outage")))
        assert code == 250, resp
    wait_maildir(base / "sqlhosted.example" / "anna")
    assert not inst.find_log(r"(panic|fatal|killed by signal)")


# --- hostile table servers ------------------------------------------------------

# What the hostile servers do, by the key's local part.
HOSTILE = ("garbage", "long", "silent", "close", "nul", "two", "good", "missing")


class _Threaded(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def hostile_reply(kind, proto):
    """(bytes to send, then close?) for one request."""
    if proto == "tcp":
        return {"garbage": (b"\x01\x02junk without code\n", False),
                "long": (b"200 " + b"x" * 20000 + b"\n", False),
                "close": (b"200 half a rep", True),
                "nul": (b"200 a\x00b\n", False),
                "two": (b"200 one\n200 two\n", False),
                "good": (b"200 OK\n", False),
                "missing": (b"500 no\n", False)}.get(kind)
    return {"garbage": (b"zz:not a netstring", False),
            "long": (b"200000:" + b"x" * 1000, False),
            "close": (b"20:OK half", True),
            "nul": (b"6:OK a\x00b,", False),
            "two": (b"4:OK x,4:OK y,", False),
            "good": (b"5:OK OK,", False),
            "missing": (b"9:NOTFOUND ,", False)}.get(kind)


def make_handler(proto):
    class Handler(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.settimeout(30)
            while True:
                try:
                    data = self.request.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                text = data.decode("latin-1")
                kind = next((k for k in HOSTILE if k + "%40" in text or k + "@" in text), "good")
                if kind == "silent":
                    time.sleep(8)
                    return
                reply, close = hostile_reply(kind, proto)
                try:
                    self.request.sendall(reply)
                except OSError:
                    return
                if close:
                    return
    return Handler


@pytest.fixture(scope="module")
def hostile_servers():
    servers = {p: _Threaded(("127.0.0.1", 0), make_handler(p)) for p in ("tcp", "socketmap")}
    for s in servers.values():
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield {p: s.server_address[1] for p, s in servers.items()}
    for s in servers.values():
        s.shutdown()
        s.server_close()


def specs(ports):
    return {"tcp": f"tcp:127.0.0.1:{ports['tcp']}",
            "socketmap": f"socketmap:inet:127.0.0.1:{ports['socketmap']}:access"}


@pytest.mark.parametrize("proto", ["tcp", "socketmap"])
def test_postmap_against_a_hostile_server(tmp_path, hostile_servers, proto):
    (tmp_path / "main.cf").write_text("lookup_server_timeout = 1s\n")
    spec = specs(hostile_servers)[proto]
    for kind in HOSTILE:
        start = time.monotonic()
        p = subprocess.run([str(POSTMAP), "-c", str(tmp_path), "-q", f"{kind}@example.com",
                            spec], capture_output=True, text=True, timeout=60)
        took = time.monotonic() - start
        if kind == "good":
            assert (p.returncode, p.stdout) == (0, "OK\n"), p.stderr
        elif kind == "missing":
            assert (p.returncode, p.stdout, p.stderr) == (1, "", "")
        else:
            # A clean temporary failure: a warning, the fatal "failed", no crash.
            assert p.returncode == 1 and p.stdout == "", (kind, p)
            assert "warning: table " + spec in p.stderr, (kind, p.stderr)
            assert f'lookup of "{kind}@example.com" failed' in p.stderr, (kind, p.stderr)
        assert took < 5, (kind, took)


@pytest.mark.parametrize("proto", ["tcp", "socketmap"])
def test_smtpd_survives_hostile_table_servers(make_instance, hostile_servers, proto):
    """Recipient access through a hostile server: a temporary failure at
    RCPT for each kind of misbehaviour, and the same session (same smtpd)
    then gets the right answer for a good key."""
    spec = specs(hostile_servers)[proto]
    inst = make_instance(extra_main=[
        "lookup_server_timeout = 1s",
        f"smtpd_recipient_restrictions = check_recipient_access {spec}, "
        "permit_mynetworks, reject"])
    with inst.smtp() as s:
        s.ehlo()
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        for kind in ("garbage", "long", "silent", "close", "nul", "two"):
            code, text = s.rcpt(f"{kind}@example.com")
            assert code == 451 and b"4.3.0" in text, (kind, code, text)
            assert s.noop()[0] == 250
        assert s.rcpt("good@example.com") == (250, b"2.1.5 Ok")
    inst.wait_log(rf"^warning: table {spec}: ", program="smtpd")
    assert not inst.find_log(r"(panic|fatal|killed by signal)")


# --- lookups off smtpd's event loop ----------------------------------------------


class SlowTcpHandler(socketserver.StreamRequestHandler):
    """tcp_table(5) server: "slow..." keys take 2 s, all others answer at once."""

    def handle(self):
        for line in self.rfile:
            key = line.decode("latin-1")[4:].strip()
            if key.startswith("slow"):
                time.sleep(2)
            try:
                self.wfile.write(b"200 OK\n" if key.startswith(("slow", "fast")) else
                                 b"500 no\n")
            except OSError:
                return


def test_slow_table_server_delays_only_its_own_session(make_instance):
    """One smtpd process; one session's RCPT waits 2 s on the table server
    while 50 other sessions go through EHLO, MAIL and RCPT (each asking the
    same server): none of them waits for the slow one."""
    server = _Threaded(("127.0.0.1", 0), SlowTcpHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spec = f"tcp:127.0.0.1:{server.server_address[1]}"
    try:
        inst = make_instance(start=False)
        inst.write_master_cf((inst.etc / "master.cf").read_text().replace(
            f"127.0.0.1:{inst.port} inet n - n - - smtpd",
            f"127.0.0.1:{inst.port} inet n - n - 1 smtpd"))
        inst.append_main_cf(f"smtpd_recipient_restrictions = check_recipient_access {spec}, "
                            "reject")
        inst.start()

        slow = socket.create_connection(("127.0.0.1", inst.port), timeout=30)
        sf = slow.makefile("rb")
        assert sf.readline().startswith(b"220")
        slow.sendall(b"EHLO slow.example\r\n")
        while not sf.readline().startswith(b"250 "):
            pass
        slow.sendall(b"MAIL FROM:<s@example.org>\r\n")
        assert sf.readline().startswith(b"250")
        started = time.monotonic()
        slow.sendall(b"RCPT TO:<slow@example.com>\r\n")
        time.sleep(0.2)            # the slow lookup is under way

        results, errors = [], []

        def one_session(i):
            try:
                t0 = time.monotonic()
                with inst.smtp() as s:
                    s.ehlo()
                    assert s.mail(SENDER)[0] == 250
                    assert s.rcpt(f"fast{i}@example.com") == (250, b"2.1.5 Ok")
                    assert s.rcpt(f"other{i}@example.com")[0] == 554
                results.append(time.monotonic() - t0)
            except Exception as e:      # reported below, with the others
                errors.append(repr(e))

        threads = [threading.Thread(target=one_session, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        all_done = time.monotonic() - started
        assert not errors, errors[:3]
        assert len(results) == 50
        # Every other session finished while the slow lookup still ran.
        assert all_done < 1.8, (all_done, max(results))
        reply = sf.readline()
        took = time.monotonic() - started
        assert reply.startswith(b"250 2.1.5"), reply
        assert 1.9 < took < 6, took
        slow.sendall(b"QUIT\r\n")
        slow.close()
        assert not inst.find_log(r"(panic|fatal|killed by signal)")
    finally:
        server.shutdown()
        server.server_close()
