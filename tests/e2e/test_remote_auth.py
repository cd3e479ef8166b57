"""SMTP AUTH in remote (smtp_sasl_*) against an aiosmtpd smarthost that
offers STARTTLS and checks every AUTH attempt itself:

right credentials   delivered, and the server saw exactly those
wrong credentials   deferred; postqueue -p shows Postfix's "SASL
                    authentication failed; server ... said: 535 ..."
mechanisms          LOGIN when that is all there is; CRAM-MD5 without TLS
                    (the default "noplaintext" allows it); PLAIN without
                    TLS refused by the default options: nothing is sent
filter              smtp_sasl_mechanism_filter narrows the choice
no credentials      a server offering AUTH gets the mail unauthenticated
hostile             AUTH answered with garbage, over-long lines, endless
                    challenges, a challenge that is no base64, NUL bytes,
                    half a reply and a close, or never: each a deferral
                    with a log line, every message still queued, and one
                    remote survives all
"""

import re
import subprocess

import pytest

from postern_instance import BUILD, clean_env, simple_message, wait_until
from smtp_peers import HostileServer, Receiver, free_port_on, make_cert
from tables_fixture import cdb_table

HOST = "127.0.0.30"
POSTQUEUE = BUILD / "bin" / "postqueue"
USERS = {"alice": "s3cret pass", "bob": "hunter2"}


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("smarthost"), "smarthost.test")


@pytest.fixture
def receiver():
    made = []

    def start(*args, **kwargs):
        r = Receiver(*args, **kwargs).start()
        made.append(r)
        return r

    yield start
    for r in made:
        r.stop()


def auth_instance(make_instance, port, passwords, *extra, tls="encrypt"):
    inst = make_instance(start=False)
    maps = cdb_table(inst, "sasl_passwd", passwords)
    inst.append_main_cf(f"relayhost = [{HOST}]:{port}", f"smtp_tls_security_level = {tls}",
                        "smtp_sasl_auth_enable = yes", f"smtp_sasl_password_maps = {maps}",
                        *extra)
    inst.start()
    return inst


def delivery(inst, qid, rcpt, timeout=30):
    rx = rf"^{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), .*dsn=(\S+), status=(\w+) \((.*)\)$"
    line = inst.wait_log(rx, program="smtp", timeout=timeout)[0]
    return re.match(rx, line.text).groups()


def postqueue_listing(inst):
    p = subprocess.run([str(POSTQUEUE), "-c", str(inst.etc), "-p"], capture_output=True,
                       env=clean_env(), timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()


def test_right_credentials_delivered(make_instance, receiver, cert):
    port = free_port_on(HOST)
    rcv = receiver(HOST, port, tls=cert[1:], users=USERS, mechanisms=("PLAIN", "LOGIN"))
    inst = auth_instance(make_instance, port, [f"[{HOST}]:{port} alice:s3cret pass"],
                         "smtp_sasl_tls_security_options = noanonymous")
    qid = inst.send(simple_message("auth ok"), rcpts=["rcpt@remote.example"])
    assert delivery(inst, qid, "rcpt@remote.example")[1:3] == ("2.0.0", "sent")
    msg = rcv.wait_messages(1)[0]
    assert msg["tls"] and msg["auth_user"] == "alice"
    assert rcv.auth_attempts == [("PLAIN", "alice", "s3cret pass", True)]
    assert "s3cret" not in inst.log.read_text()


def test_wrong_credentials_deferred_with_reason(make_instance, receiver, cert):
    port = free_port_on(HOST)
    rcv = receiver(HOST, port, tls=cert[1:], users=USERS, mechanisms=("PLAIN", "LOGIN"))
    inst = auth_instance(make_instance, port, [f"[{HOST}]:{port} alice:wrong"],
                         "smtp_sasl_tls_security_options = noanonymous")
    qid = inst.send(simple_message("auth bad"), rcpts=["rcpt@remote.example"])
    relay, dsn, status, text = delivery(inst, qid, "rcpt@remote.example")
    said = f"SASL authentication failed; server {HOST}[{HOST}] said: " \
           "535 5.7.8 Authentication credentials invalid"
    assert (dsn, status, text) == ("4.7.8", "deferred", said)
    assert rcv.messages == []
    assert rcv.auth_attempts and not any(ok for *_, ok in rcv.auth_attempts)
    listing = wait_until(lambda: (lambda t: t if qid in t else None)(postqueue_listing(inst)), 10,
                         what="the message in postqueue -p")
    assert said in " ".join(listing.split()), listing
    assert "wrong" not in inst.log.read_text()


def test_login_when_only_login_is_offered(make_instance, receiver, cert):
    port = free_port_on(HOST)
    rcv = receiver(HOST, port, tls=cert[1:], users=USERS, mechanisms=("LOGIN",))
    inst = auth_instance(make_instance, port, [f"[{HOST}]:{port} bob:hunter2"],
                         "smtp_sasl_tls_security_options = noanonymous")
    qid = inst.send(simple_message("auth login"), rcpts=["rcpt@remote.example"])
    assert delivery(inst, qid, "rcpt@remote.example")[2] == "sent"
    assert rcv.wait_messages(1)[0]["auth_user"] == "bob"
    assert rcv.auth_attempts == [("LOGIN", "bob", "hunter2", True)]


def test_cram_md5_without_tls(make_instance, receiver):
    """No TLS: the default smtp_sasl_security_options (noplaintext,
    noanonymous) leave CRAM-MD5, which never sends the password."""
    port = free_port_on(HOST)
    rcv = receiver(HOST, port, users=USERS, auth_require_tls=False)
    inst = auth_instance(make_instance, port, [f"[{HOST}]:{port} alice:s3cret pass"], tls="none")
    qid = inst.send(simple_message("auth cram"), rcpts=["rcpt@remote.example"])
    assert delivery(inst, qid, "rcpt@remote.example")[2] == "sent"
    msg = rcv.wait_messages(1)[0]
    assert not msg["tls"] and msg["auth_user"] == "alice"
    assert [(m, u, ok) for m, u, _, ok in rcv.auth_attempts] == [("CRAM-MD5", "alice", True)]


def test_plaintext_mechanism_refused_without_tls(make_instance, receiver):
    port = free_port_on(HOST)
    rcv = receiver(HOST, port, users=USERS, mechanisms=("PLAIN", "LOGIN"), auth_require_tls=False)
    inst = auth_instance(make_instance, port, [f"[{HOST}]:{port} alice:s3cret pass"], tls="none")
    qid = inst.send(simple_message("auth plain refused"), rcpts=["rcpt@remote.example"])
    relay, dsn, status, text = delivery(inst, qid, "rcpt@remote.example")
    assert (dsn, status) == ("4.7.0", "deferred")
    assert text == (f"SASL authentication failed: cannot authenticate to server "
                    f"{HOST}[{HOST}]: no mechanism available")
    assert rcv.auth_attempts == [] and rcv.messages == []


def test_mechanism_filter(make_instance, receiver, cert):
    port = free_port_on(HOST)
    rcv = receiver(HOST, port, tls=cert[1:], users=USERS)
    inst = auth_instance(make_instance, port, [f"[{HOST}]:{port} alice:s3cret pass"],
                         "smtp_sasl_tls_security_options = noanonymous",
                         "smtp_sasl_mechanism_filter = login")
    qid = inst.send(simple_message("auth filter"), rcpts=["rcpt@remote.example"])
    assert delivery(inst, qid, "rcpt@remote.example")[2] == "sent"
    assert [m for m, *_ in rcv.auth_attempts] == ["LOGIN"]


def test_no_credentials_sends_unauthenticated(make_instance, receiver, cert):
    port = free_port_on(HOST)
    rcv = receiver(HOST, port, tls=cert[1:], users=USERS, auth_required=False)
    inst = auth_instance(make_instance, port, ["[other.example]:587 alice:s3cret pass"])
    qid = inst.send(simple_message("no creds"), rcpts=["rcpt@remote.example"])
    assert delivery(inst, qid, "rcpt@remote.example")[2] == "sent"
    assert rcv.wait_messages(1)[0]["auth_user"] is None
    assert rcv.auth_attempts == []


# --- hostile servers -----------------------------------------------------------


def auth_script(answer):
    """A server offering AUTH PLAIN CRAM-MD5 whose AUTH answer is answer(conn)."""
    def script(conn):
        conn.greet_and_ehlo(("PIPELINING", "AUTH PLAIN CRAM-MD5"))
        conn.expect("AUTH")
        answer(conn)
        conn.wait_close(timeout=30)
    return script


HOSTILE = {
    "garbage": (lambda c: c.send("hello there\r\n"), "sent a malformed reply"),
    "long_line": (lambda c: c.send("535 " + "x" * 100000 + "\r\n"), "sent an oversized reply"),
    "long_challenge": (lambda c: c.send("334 " + "QUFB" * 600 + "\r\n") or
                       c.read_line() and c.send("535 5.7.0 no\r\n"), None),
    "endless_challenges": (lambda c: [c.send("334 PDEyMz4=\r\n") or c.read_line()
                                      for _ in range(10)], "unexpected CRAM-MD5 challenge"),
    "bad_base64": (lambda c: c.send("334 !!!not base64!!!\r\n"), "unexpected CRAM-MD5 challenge"),
    "nul_bytes": (lambda c: c.send("535 5.7.8 a\0b\r\n"), "sent a malformed reply"),
    "close_mid_reply": (lambda c: c.send("535-5.7.8 half a re") or c.sock.shutdown(2),
                        "lost connection with"),
    "silent": (lambda c: None, "timed out while performing the AUTH handshake"),
}


def test_hostile_auth_answers_defer(make_instance, receiver):
    servers = {name: HostileServer(HOST, auth_script(answer)).start()
               for name, (answer, _) in HOSTILE.items()}
    try:
        inst = make_instance(start=False)
        lines = [f"[{HOST}]:{srv.port} alice:s3cret pass" for srv in servers.values()]
        maps = cdb_table(inst, "sasl_passwd", lines)
        transports = cdb_table(inst, "transport", [f"{name}.example smtp:[{HOST}]:{srv.port}"
                                                  for name, srv in servers.items()])
        inst.append_main_cf("smtp_sasl_auth_enable = yes", f"smtp_sasl_password_maps = {maps}",
                            f"transport_maps = {transports}", "smtp_helo_timeout = 10s")
        inst.start()
        qids = {name: inst.send(simple_message(f"hostile {name}"), rcpts=[f"u@{name}.example"])
                for name in servers}
        for name, qid in qids.items():
            relay, dsn, status, text = delivery(inst, qid, f"u@{name}.example", timeout=60)
            assert status == "deferred" and dsn.startswith("4."), (name, text)
            want = HOSTILE[name][1]
            assert want is None or want in text, (name, text)
        assert len(set(inst.pids("remote"))) <= 1
        assert "s3cret" not in inst.log.read_text()
        # Nothing lost: every message waits in the queue; nothing crashed.
        queued = {f.name for f in inst.queue_files()}
        assert set(qids.values()) <= queued, (qids, queued)
        assert not inst.find_log(r"(fatal|panic):")
    finally:
        for srv in servers.values():
            srv.stop()
