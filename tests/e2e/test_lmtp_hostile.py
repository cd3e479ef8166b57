"""The LMTP client against a scripted LMTP server (a raw socket server from
smtp_peers.py, reached through transport_maps = lmtp:inet:127.0.0.1:PORT):

- one reply per recipient after the final dot, each deciding its own
  recipient (2xx sent, 4xx deferred, 5xx bounced), in RCPT order;
- lmtp_destination_recipient_limit splits a message into transactions
  that share one cached connection (LHLO once), lmtp_lhlo_name is the LHLO
  argument;
- hostile replies after the dot (garbage, an over-long line, a reply cut
  short by a close, a close after the first recipient's reply, no reply at
  all): the recipients without a reply are deferred with a log line, the
  lmtp process survives, and once the server behaves every recipient is
  delivered exactly once.
"""

import re
import threading

from postern_instance import simple_message, wait_until
from smtp_peers import HostileServer

RCPTS = ["r1@lmtp.example", "r2@lmtp.example", "r3@lmtp.example"]


class FakeLmtp:
    """An LMTP server whose replies after the final dot follow self.mode;
    self.saved counts, per recipient, the 250s it gave after the dot."""

    def __init__(self):
        self.mode = "ok"
        self.saved = {}
        self.lhlo = []
        self.mails = 0
        self.lock = threading.Lock()
        self.server = HostileServer("127.0.0.1", self.script).start()
        self.port = self.server.port

    def save(self, rcpt):
        with self.lock:
            self.saved[rcpt] = self.saved.get(rcpt, 0) + 1

    def finals(self, conn, rcpts):
        mode = self.mode
        if mode == "stall":
            conn.read_line(60)   # whatever comes, no answer
            return False
        for i, rcpt in enumerate(rcpts):
            if mode == "mixed":
                reply = ("250 2.0.0 <%s> saved" % rcpt, "452 4.2.2 <%s> Mailbox full" % rcpt,
                         "552 5.2.2 <%s> Quota exceeded" % rcpt)[i % 3]
            else:
                reply = "250 2.0.0 <%s> saved" % rcpt
            if mode == "garbage" and i == 1:
                conn.send(b"\x00\xffnot a reply\r\n")
                return False
            if mode == "long" and i == 1:
                conn.send(b"250 " + b"x" * 100000 + b"\r\n")
                return False
            if mode == "truncated" and i == 1:
                conn.send("250 2.0.0 <%s> sav" % rcpt)
                return False
            if mode == "close" and i == 1:
                return False
            conn.send(reply + "\r\n")
            if reply.startswith("250"):
                self.save(rcpt)
        return True

    def script(self, conn):
        conn.send("220 fake.lmtp LMTP ready\r\n")
        self.lhlo.append(conn.expect("LHLO"))
        conn.send("250-fake.lmtp\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n"
                  "250 8BITMIME\r\n")
        rcpts = []
        while True:
            line = conn.read_line(60)
            verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
            if verb == "MAIL":
                rcpts = []
                with self.lock:
                    self.mails += 1
                conn.send("250 2.1.0 OK\r\n")
            elif verb == "RCPT":
                rcpts.append(re.search(r"<([^>]*)>", line)[1])
                conn.send("250 2.1.5 OK\r\n")
            elif verb == "DATA":
                conn.send("354 OK\r\n")
                conn.read_data()
                if not self.finals(conn, rcpts):
                    return
            elif verb == "RSET":
                conn.send("250 2.0.0 OK\r\n")
            elif verb == "QUIT":
                conn.send("221 2.0.0 Bye\r\n")
                return
            else:
                conn.send("500 5.5.1 Unknown command\r\n")

    def stop(self):
        self.server.stop()


def master_cf(inst):
    return (f"127.0.0.1:{inst.port} inet n - n - - smtpd\n"
            "cleanup unix - - n - 0 cleanup\n"
            "qmgr fifo n - n 300 1 qmgr\n"
            "local unix - n n - - local\n"
            "lmtp unix - - n - - lmtp\n"
            "bounce unix - - n - 0 bounce\n")


def fake_instance(make_instance, fake, extra=()):
    inst = make_instance(start=False)
    inst.write_master_cf(master_cf(inst))
    inst.write_main_cf(["relay_domains = lmtp.example",
                        f"transport_maps = inline:{{ lmtp.example=lmtp:inet:127.0.0.1:{fake.port} }}",
                        "lmtp_data_done_timeout = 3s", "lmtp_lhlo_name = client.lmtp.test",
                        *extra])
    inst.start()
    return inst


def status(inst, qid, rcpt):
    lines = inst.find_log(rf"^{qid}: to=<{re.escape(rcpt)}>, ", program="lmtp")
    return lines[-1].text if lines else None


def test_one_reply_per_recipient_and_connection_reuse(make_instance):
    fake = FakeLmtp()
    try:
        fake.mode = "mixed"
        inst = fake_instance(make_instance, fake, extra=[
            "lmtp_destination_recipient_limit = 3", "lmtp_destination_concurrency_limit = 1"])
        qid = inst.send(simple_message(subject="mixed"), rcpts=RCPTS, sender="s@localhost")
        lines = [wait_until(lambda r=r: status(inst, qid, r), 30, what=r) for r in RCPTS]
        relay = rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{fake.port}, "
        assert re.search(relay + r".*dsn=2\.0\.0, status=sent \(250 2\.0\.0 <r1@lmtp\.example> "
                         r"saved\)$", lines[0]), lines[0]
        assert re.search(relay + r".*dsn=4\.2\.2, status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\]"
                         r" said: 452 4\.2\.2 <r2@lmtp\.example> Mailbox full \(in reply to end "
                         r"of DATA command\)\)$", lines[1]), lines[1]
        assert re.search(r"dsn=5\.2\.2, status=bounced \(host .* said: 552 5\.2\.2 "
                         r"<r3@lmtp\.example> Quota exceeded", lines[2]), lines[2]
        assert fake.lhlo == ["LHLO client.lmtp.test"]
        # The deferred one goes on the next try.
        fake.mode = "ok"
        inst.wait_deferred(qid)
        assert inst.postern("flush")[0] == 0
        inst.wait_log(rf"^{qid}: removed$", program="qmgr")
        assert fake.saved == {"r1@lmtp.example": 1, "r2@lmtp.example": 1}
        # Recipient limit 2: five recipients in three transactions on one
        # connection.
        inst.stop()
        inst.append_main_cf("lmtp_destination_recipient_limit = 2",
                            "lmtp_connection_cache_time_limit = 10s")
        inst.start()
        mails, conns = fake.mails, fake.server.connections
        five = [f"m{i}@lmtp.example" for i in range(5)]
        qid = inst.send(simple_message(subject="five"), rcpts=five)
        for r in five:
            assert "status=sent" in wait_until(lambda r=r: status(inst, qid, r), 30, what=r)
        assert fake.mails - mails == 3
        assert fake.server.connections - conns == 1
    finally:
        fake.stop()


def test_hostile_lmtp_server_defers_and_loses_nothing(make_instance):
    fake = FakeLmtp()
    try:
        inst = fake_instance(make_instance, fake, extra=["lmtp_destination_recipient_limit = 10"])
        qids = []
        for mode, reason in (("garbage", r"sent a malformed reply while sending end of data"),
                             ("long", r"sent an oversized reply while sending end of data"),
                             ("truncated", r"lost connection with 127\.0\.0\.1\[127\.0\.0\.1\] "
                                           r"while sending end of data"),
                             ("close", r"lost connection with 127\.0\.0\.1\[127\.0\.0\.1\] "
                                       r"while sending end of data"),
                             ("stall", r"conversation with 127\.0\.0\.1\[127\.0\.0\.1\] timed "
                                       r"out while sending end of data")):
            fake.mode = mode
            rcpts = [f"{mode}{i}@lmtp.example" for i in range(3)]
            qid = inst.send(simple_message(subject=mode), rcpts=rcpts)
            qids.append((qid, rcpts))
            # The first recipient's 250 came before the trouble: it is sent;
            # the others are deferred with the reason (stall: all three).
            for i, r in enumerate(rcpts):
                line = wait_until(lambda r=r: status(inst, qid, r), 30, what=f"{mode} {r}")
                if i == 0 and mode != "stall":
                    assert "status=sent" in line, line
                else:
                    assert "status=deferred" in line and re.search(reason, line), line
        lmtp = inst.pids("lmtp")
        assert lmtp, "no lmtp process"
        fake.mode = "ok"
        for qid, _rcpts in qids:
            inst.wait_deferred(qid)
        assert inst.postern("flush")[0] == 0
        for qid, rcpts in qids:
            inst.wait_log(rf"^{qid}: removed$", program="qmgr")
        for qid, rcpts in qids:
            for r in rcpts:
                assert fake.saved.get(r) == 1, (r, fake.saved)
        assert set(inst.pids("lmtp")) & set(lmtp), "the lmtp process did not survive"
    finally:
        fake.stop()
