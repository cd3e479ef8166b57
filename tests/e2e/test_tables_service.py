"""Network tables in a running instance: hosted domains and mailboxes from
one SQL database (this session's private MariaDB), a database that goes
down (a temporary failure, then mail flows again without a restart of
Postern), and hostile tcp: and socketmap: servers (garbage, over-long
replies, no answer, a close mid-reply, NUL bytes): each a temporary
failure with a warning, never a crash, and the next lookup works.
"""

import os
import re
import socket
import socketserver
import subprocess
import threading
import time

import pytest

from postern_instance import BUILD, SENDER, TIME_SCALE, crlf, simple_message, wait_until
from table_servers import mariadb, postgres  # noqa: F401
from tables_fixture import maildir_new, virtual_base, wait_maildir

POSTMAP = BUILD / "bin" / "postmap"


def sql_hosted_instance(make_instance, mariadb, extra_main=()):
    inst = make_instance(start=False, extra_main=extra_main)
    base, base_cf = virtual_base(inst)
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
        *base_cf,
        "lookup_server_timeout = 5s",
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


class RecipientLoad:
    """Client threads that each send message after message (five
    transactions a session) to one hosted mailbox, and note every reply:
    the RCPT replies with their time, the Message-IDs of the messages
    acknowledged with 250 after DATA, and anything else that went wrong."""

    def __init__(self, inst, rcpt, threads=4):
        self.inst, self.rcpt = inst, rcpt
        self.lock = threading.Lock()
        self.replies = []          # (monotonic time, code, text)
        self.accepted = {}         # Message-ID -> monotonic time of the 250
        self.errors = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a client thread hangs"

    def one_message(self, s, i, n):
        code, text = s.mail(SENDER)
        assert code == 250, (code, text)
        code, text = s.rcpt(self.rcpt)
        with self.lock:
            self.replies.append((time.monotonic(), code, text))
        if code != 250:
            s.rset()
            return
        msgid = f"<load.{i}.{n}.{time.time_ns()}@client.example>"
        code, text = s.data(crlf(simple_message(f"load {i}.{n}", msgid=msgid)))
        if code == 250:
            with self.lock:
                self.accepted[msgid] = time.monotonic()
        else:
            with self.lock:
                self.errors.append(("DATA", code, text))

    def run(self, i):
        n = 0
        while not self.stopping.is_set():
            try:
                with self.inst.smtp() as s:
                    s.ehlo()
                    # A few transactions per session, as a real client does.
                    for _ in range(5):
                        if self.stopping.is_set():
                            break
                        self.one_message(s, i, n)
                        n += 1
            except Exception as e:          # reported by the test
                with self.lock:
                    self.errors.append(repr(e))
                time.sleep(0.1)

    def count(self, code, since):
        with self.lock:
            return sum(1 for t, c, _ in self.replies if c == code and t >= since)


def message_ids(paths):
    ids = []
    for p in paths:
        m = re.search(rb"^Message-ID: (<[^>]+>)", p.read_bytes(), re.M | re.I)
        ids.append(m.group(1).decode() if m else None)
    return ids


def test_mariadb_killed_mid_load(make_instance, mariadb):
    """Mail flows through virtual_mailbox_maps in MariaDB from four client
    threads; mariadbd is SIGKILLed mid-load: while it is down every RCPT
    gets 451 4.3.0 (never a 5xx, never a dropped session), and once it is
    back, same master, mail is accepted again. Every message that got its
    250 is delivered exactly once (virtual, which asks MariaDB too, defers
    while it is down and delivers on the next queue run)."""
    inst, base = sql_hosted_instance(make_instance, mariadb, extra_main=(
        "minimal_backoff_time = 1s", "maximal_backoff_time = 2s", "queue_run_delay = 1s"))
    [master] = inst.master_pids()
    with RecipientLoad(inst, "anna@sqlhosted.example") as load:
        wait_until(lambda: len(load.accepted) >= 20, 30, what="20 messages accepted")
        killed = time.monotonic()
        mariadb.proc.kill()
        mariadb.proc.wait(10)
        # Lookups under way when it died may still have got their answer.
        wait_until(lambda: load.count(451, killed + 0.5) >= 20, 30,
                   what="20 RCPTs answered 451 while MariaDB is down")
        restarting = time.monotonic()
        mariadb.restart()
        back = time.monotonic()
        wait_until(lambda: load.count(250, back) >= 20, 30,
                   what="20 RCPTs accepted after MariaDB came back")
    print(f"accepted {len(load.accepted)}, RCPT 451 {load.count(451, 0)}, "
          f"down {back - killed:.1f} s")
    assert not load.errors, load.errors[:5]
    codes = {(c, t.split(b" ", 1)[0]) for _, c, t in load.replies}
    assert codes <= {(250, b"2.1.5"), (451, b"4.3.0")}, codes
    down = {(c, t) for w, c, t in load.replies if killed + 0.5 < w < restarting}
    # Not one accepted while it was down; Postfix's reply, whether the
    # domain or the mailbox lookup failed.
    assert down == {(451, b"4.3.0 <anna@sqlhosted.example>: Temporary lookup failure")}, down
    assert inst.master_pids() == [master]

    accepted = set(load.accepted)
    maildir = base / "sqlhosted.example" / "anna"
    wait_maildir(maildir, len(accepted), timeout=60)
    inst.wait_queue_empty(30)
    ids = message_ids(maildir_new(maildir))
    assert sorted(ids) == sorted(accepted), (len(ids), len(accepted))
    inst.wait_log(r"^warning: .*mysql", program="smtpd")
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


# --- SQL servers that break off mid-result ----------------------------------------


class CuttingProxy:
    """A loopback TCP port in front of a real database's UNIX socket that
    passes everything through, until a client's request names "cut-drop"
    or "cut-stall": then it forwards the first half of the server's answer
    (the result has begun: column descriptions and some rows) and closes
    both connections ("drop"), or keeps the client's connection open and
    silent ("stall"). The server speaks its real protocol throughout."""

    def __init__(self, upstream):
        self.upstream = str(upstream)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX)
            try:
                server.connect(self.upstream)
            except OSError:
                client.close()
                continue
            state = {"cut": None}
            threading.Thread(target=self.to_server, args=(client, server, state),
                             daemon=True).start()
            threading.Thread(target=self.to_client, args=(client, server, state),
                             daemon=True).start()

    def to_server(self, client, server, state):
        try:
            while data := client.recv(65536):
                for kind in ("drop", "stall"):
                    if b"cut-" + kind.encode() in data:
                        state["cut"] = kind
                server.sendall(data)
        except OSError:
            pass
        for sock in (client, server):
            sock.close()

    def to_client(self, client, server, state):
        try:
            while data := server.recv(65536):
                if state["cut"] is None:
                    client.sendall(data)
                    continue
                client.sendall(data[:max(1, len(data) // 2)])
                self.cuts += 1
                if state["cut"] == "drop":
                    client.shutdown(socket.SHUT_RDWR)
                    break
                while server.recv(65536):     # stall: swallow the rest
                    pass
        except OSError:
            pass
        server.close()

    def close(self):
        self.listener.close()


# Every key that starts with "cut-" finds every row (so its answer is long
# enough to be cut inside the rows); bob@example.com finds one. With
# require_result_set = no, an answer taken for an empty one would be "not
# found", and mail would be refused for good.
CUT_QUERY = ("query = SELECT 'OK' FROM aliases WHERE address = '%s' OR '%s' LIKE 'cut-%%'",
             "require_result_set = no")


@pytest.fixture(params=["mysql", "pgsql"])
def cut_sql_table(request, tmp_path):
    """(spec, proxy) of a mysql: or pgsql: table whose server is reached
    through a CuttingProxy."""
    if request.param == "mysql":
        server = request.getfixturevalue("mariadb")
        upstream = server.socket
    else:
        server = request.getfixturevalue("postgres")
        upstream = server.socket
    proxy = CuttingProxy(upstream)
    cf = tmp_path / f"{request.param}-cut.cf"
    cf.write_text(server.cf(*CUT_QUERY, hosts=f"inet:127.0.0.1:{proxy.port}"))
    os.chmod(tmp_path, 0o755)
    yield f"{request.param}:{cf}", proxy
    proxy.close()


def test_postmap_when_the_sql_server_breaks_off_mid_result(tmp_path, cut_sql_table):
    spec, proxy = cut_sql_table
    (tmp_path / "main.cf").write_text("lookup_server_timeout = 1s\n")

    def postmap(key):
        start = time.monotonic()
        p = subprocess.run([str(POSTMAP), "-c", str(tmp_path), "-q", key, spec],
                           capture_output=True, text=True, timeout=60)
        return p, time.monotonic() - start

    p, _ = postmap("bob@example.com")
    assert (p.returncode, p.stdout) == (0, "OK\n"), p.stderr
    for kind in ("drop", "stall"):
        key = f"cut-{kind}@example.com"
        p, took = postmap(key)
        assert p.returncode == 1 and p.stdout == "", (kind, p)
        assert f"warning: table {spec}: " in p.stderr, p.stderr
        assert f'table {spec}: lookup of "{key}" failed' in p.stderr, p.stderr
        assert "Segmentation" not in p.stderr and "Aborted" not in p.stderr
        # One reconnect and retry, each wait bounded by the 1 s time-out.
        assert took < (3 if kind == "drop" else 6) * TIME_SCALE, (kind, took)
    assert proxy.cuts >= 2


def test_smtpd_when_the_sql_server_breaks_off_mid_result(make_instance, cut_sql_table):
    """check_recipient_access through the cutting proxy: 451 4.3.0 for a
    lookup whose answer broke off (closed or stalled), the same session
    then gets its answer for a good key (the worker reconnects)."""
    spec, proxy = cut_sql_table
    inst = make_instance(extra_main=[
        "lookup_server_timeout = 1s",
        f"smtpd_recipient_restrictions = check_recipient_access {spec}, reject"])
    [smtpd] = [None]
    with inst.smtp() as s:
        s.ehlo()
        assert s.mail(SENDER) == (250, b"2.1.0 Ok")
        assert s.rcpt("bob@example.com") == (250, b"2.1.5 Ok")
        smtpd = inst.pids("smtpd")
        for kind in ("drop", "stall", "drop"):
            code, text = s.rcpt(f"cut-{kind}@example.com")
            assert (code, text) == (451, f"4.3.0 <cut-{kind}@example.com>: Temporary "
                                         "lookup failure".encode()), (kind, code, text)
            assert s.rcpt("bob@example.com") == (250, b"2.1.5 Ok"), kind
        assert s.rcpt("nobody@elsewhere.test")[0] == 554
        assert inst.pids("smtpd") == smtpd
    inst.wait_log(rf"^warning: table {re.escape(spec)}: lookup of \"cut-stall@example\.com\" "
                  "failed", program="smtpd")
    assert not inst.find_log(r"(panic|fatal|killed by signal)")


@pytest.mark.parametrize("kind", ["mysql", "pgsql"])
def test_postmap_when_the_sql_server_never_greets(tmp_path, kind, request):
    """A port that takes the connection and then says nothing, not even
    the server's greeting: a temporary failure within the time-out."""
    server = request.getfixturevalue("mariadb" if kind == "mysql" else "postgres")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)          # the kernel completes the handshake; nobody reads
        cf = tmp_path / f"{kind}-silent.cf"
        cf.write_text(server.cf(CUT_QUERY[0],
                                hosts=f"inet:127.0.0.1:{silent.getsockname()[1]}"))
        (tmp_path / "main.cf").write_text("lookup_server_timeout = 1s\n")
        start = time.monotonic()
        p = subprocess.run([str(POSTMAP), "-c", str(tmp_path), "-q", "bob@example.com",
                            f"{kind}:{cf}"], capture_output=True, text=True, timeout=60)
        took = time.monotonic() - start
    assert p.returncode == 1 and p.stdout == "", p
    assert f'table {kind}:{cf}: lookup of "bob@example.com" failed' in p.stderr, p.stderr
    assert took < 5 * TIME_SCALE, took


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
