"""smtpd against a fake Dovecot auth service that misbehaves (a raw socket
server from smtp_peers.py on smtpd_sasl_path = inet:127.0.0.1:PORT):
garbage, an over-long line, a truncated reply, a stall before the
handshake and after a request, a close in the middle of a reply, bad
request ids and user names, a temporary failure. Each is a 454 for the
session that asked and a warning in the log, never a crash (the same smtpd
process serves every case) and never a wait beyond the 10 s deadline; other
sessions are served meanwhile, and AUTH works again as soon as the service
behaves.
"""

import threading
import time

from postern_instance import HELO, RawSMTP, simple_message
from smtp_peers import HostileServer
from smtpd_fixture import plain_response

HANDSHAKE = ("VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\n"
             "MECH\tANONYMOUS\tanonymous\nSPID\t4242\nCUID\t7\nCOOKIE\t0123abcd\nDONE\n")
LOST = (454, ["4.7.0 Temporary authentication failure: Connection lost to authentication server"])


class FakeAuth:
    """A Dovecot auth service whose answer to AUTH is self.mode's."""

    def __init__(self):
        self.mode = "ok"
        self.server = HostileServer("127.0.0.1", self.script).start()
        self.port = self.server.port

    def answer(self, conn, rid):
        mode = self.mode
        if mode == "ok":
            conn.send(f"OK\t{rid}\tuser=alice@example.com\n")
        elif mode == "garbage":
            conn.send(b"\x00\x01\x02 \xff garbage\n")
        elif mode == "long":
            conn.send(b"FAIL\t" + rid.encode() + b"\treason=" + b"A" * 40000 + b"\n")
        elif mode == "truncated":
            conn.send(f"OK\t{rid}\tuser=ali")
            return False
        elif mode == "close":
            conn.send("FA")
            return False
        elif mode == "badid":
            conn.send("OK\t12x\tuser=alice@example.com\n")
        elif mode == "baduser":
            conn.send(f"OK\t{rid}\tuser=ali\x1bce\n")
        elif mode == "nouser":
            conn.send(f"OK\t{rid}\n")
        elif mode == "temp":
            conn.send(f"FAIL\t{rid}\ttemp\treason=database \001tdown\n")
        elif mode == "unknown-id":
            conn.send(f"OK\t{int(rid) + 1000}\tuser=mallory\n")
        # "stall": no answer at all
        return True

    def script(self, conn):
        if self.mode == "handshake-stall":
            conn.wait_close(60)
            return
        if self.mode == "badversion":
            conn.send("VERSION\t2\t0\nDONE\n")
            conn.wait_close(60)
            return
        conn.send(HANDSHAKE)
        while True:
            line = conn.read_line(60)
            if line.startswith("AUTH\t") and not self.answer(conn, line.split("\t")[1]):
                return

    def stop(self):
        self.server.stop()


def hostile_instance(make_instance, fake):
    return make_instance(extra_main=[
        "smtpd_sasl_auth_enable = yes", "smtpd_tls_auth_only = no",
        "smtpd_sasl_type = dovecot", f"smtpd_sasl_path = inet:127.0.0.1:{fake.port}",
        "broken_sasl_auth_clients = yes"])


def auth_once(inst, timeout=30):
    with RawSMTP(inst.port, timeout=timeout) as c:
        assert c.read_reply()[0] == 220
        code, ehlo = c.cmd(f"EHLO {HELO}")
        assert code == 250, ehlo
        t = time.monotonic()
        reply = c.cmd("AUTH PLAIN " + plain_response("alice@example.com", "pw"))
        took = time.monotonic() - t
        assert c.cmd("NOOP")[0] == 250   # the session goes on
        return reply, took, ehlo


def test_hostile_auth_service(make_instance):
    fake = FakeAuth()
    try:
        inst = hostile_instance(make_instance, fake)
        reply, _, ehlo = auth_once(inst)
        assert reply == (235, ["2.7.0 Authentication successful"])
        # ANONYMOUS is filtered out (smtpd_sasl_security_options = noanonymous);
        # broken_sasl_auth_clients adds the old AUTH= form.
        assert "AUTH PLAIN LOGIN" in ehlo and "AUTH=PLAIN LOGIN" in ehlo, ehlo
        smtpd = inst.pids("smtpd")
        for mode, warning in (
                ("garbage", r"Dovecot auth server 'inet:127\.0\.0\.1:\d+': NUL byte; closing"),
                ("long", r"Dovecot auth server 'inet:127\.0\.0\.1:\d+': line too long; closing"),
                ("truncated", r"Dovecot auth server 'inet:127\.0\.0\.1:\d+' closed the connection"),
                ("close", r"Dovecot auth server 'inet:127\.0\.0\.1:\d+' closed the connection"),
                ("badid", r"Dovecot auth server 'inet:127\.0\.0\.1:\d+': bad request id"),
                ("baduser", r"Dovecot auth server 'inet:127\.0\.0\.1:\d+': bad user name"),
                ("badversion", r"unsupported protocol version")):
            fake.mode = mode
            reply, took, _ = auth_once(inst)
            assert reply == LOST, (mode, reply)
            assert took < 5, (mode, took)
            inst.wait_log(warning, program="smtpd")
        fake.mode = "nouser"
        assert auth_once(inst)[0] == (
            454, ["4.7.0 Temporary authentication failure: Authentication backend error"])
        fake.mode = "temp"
        assert auth_once(inst)[0] == (
            454, ["4.7.0 Temporary authentication failure: database ?down"])
        fake.mode = "ok"
        assert auth_once(inst)[0][0] == 235
        assert inst.pids("smtpd") == smtpd, "smtpd was restarted"
    finally:
        fake.stop()


def test_stalled_auth_service_costs_only_its_session(make_instance):
    fake = FakeAuth()
    try:
        inst = hostile_instance(make_instance, fake)
        assert auth_once(inst)[0][0] == 235
        fake.mode = "stall"
        result = {}

        def stalled():
            result["reply"], result["took"], _ = auth_once(inst)

        th = threading.Thread(target=stalled)
        th.start()
        time.sleep(0.5)
        # Meanwhile another session sends a message at once, and an id the
        # service never gave out is ignored.
        t = time.monotonic()
        inst.send(simple_message(subject="during the stall"), rcpts=["gina@localhost"])
        assert time.monotonic() - t < 3
        th.join(30)
        assert result["reply"] == LOST, result
        assert 9 <= result["took"] < 15, result
        inst.wait_log(r"warning: SASL: Dovecot auth server 'inet:127\.0\.0\.1:\d+' did not "
                      r"answer request \d+ in 10 s", program="smtpd")
        inst.wait_delivered("gina")
        fake.mode = "unknown-id"
        reply, took, _ = auth_once(inst)
        assert reply == LOST and took >= 9, (reply, took)
        # A service that never finishes its handshake: the first EHLO of a
        # new smtpd waits for it at most 10 s, then goes without AUTH.
        fake.mode = "handshake-stall"
        inst.stop()
        inst.start()
        with RawSMTP(inst.port, timeout=30) as c:
            assert c.read_reply()[0] == 220
            t = time.monotonic()
            code, ehlo = c.cmd(f"EHLO {HELO}")
            assert code == 250 and time.monotonic() - t < 15
            assert not any(k.startswith("AUTH") for k in ehlo), ehlo
        inst.wait_log(r"Dovecot auth server 'inet:127\.0\.0\.1:\d+': no handshake in time",
                      program="smtpd")
        fake.mode = "ok"
        assert auth_once(inst)[0][0] == 235
    finally:
        fake.stop()
