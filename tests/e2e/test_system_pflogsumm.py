"""Debian's pflogsumm reads the maillog of a run that delivers some
messages, bounces some (the relayhost, a small SMTP server here, refuses
their recipient) and rejects some at RCPT (relaying from a client outside
mynetworks), and reports exactly those counts: with its default options
when main.cf sets syslog_name = postfix (the name pflogsumm and other log
tools look for by default), with --syslog-name=postern for Postern's own
default. Postern's per-message lines are Postfix's, so nothing else is
needed."""

import re
import shutil
import socket
import socketserver
import threading

import pytest

from postern_instance import (RawSMTP, free_port, run_logged, simple_message, wait_until)

DELIVERED = 6
BOUNCED = 3
REJECTED = 4
PFLOGSUMM = shutil.which("pflogsumm") or "/usr/sbin/pflogsumm"


class RefusingSMTP(socketserver.StreamRequestHandler):
    """An SMTP server that refuses every recipient with 550 5.1.1."""

    timeout = 30

    def reply(self, text):
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self):
        self.reply("220 sink.test ESMTP")
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            verb = line.decode("ascii", "replace").strip().split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250 sink.test")
            elif verb in ("MAIL", "RSET", "NOOP"):
                self.reply("250 2.0.0 Ok")
            elif verb == "RCPT":
                self.reply("550 5.1.1 Recipient address rejected: User unknown")
            elif verb == "DATA":
                self.reply("554 5.5.1 No valid recipients")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("502 5.5.2 Command not recognized")


@pytest.fixture
def refusing_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), RefusingSMTP)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def grand_totals(report):
    totals = {}
    section = report.split("Grand Totals", 1)[1]
    for m in re.finditer(r"^\s*(\d+)\s+(received|delivered|forwarded|deferred|bounced|"
                         r"rejected)\b", section, re.M):
        totals.setdefault(m[2], int(m[1]))
    return totals


@pytest.mark.parametrize("syslog_name, options", [("postfix", []),
                                                   ("postern", ["--syslog-name=postern"])])
def test_pflogsumm_counts(make_instance, refusing_server, syslog_name, options):
    inst = make_instance(extra_main=[f"relayhost = [127.0.0.1]:{refusing_server}",
                                     f"syslog_name = {syslog_name}"])
    for i in range(DELIVERED):
        inst.send(simple_message(subject=f"delivered {i}"),
                  rcpts=[("alice", "bob")[i % 2] + "@localhost"])
    # Bounces go back to a local sender, whose DSNs are delivered too.
    for i in range(BOUNCED):
        inst.send(simple_message(subject=f"bounced {i}"), rcpts=[f"nobody{i}@remote.example"],
                  sender="owner@localhost")
    # 127.0.0.2 is outside mynetworks: relaying is refused at RCPT.
    for i in range(REJECTED):
        with RawSMTP(inst.port, source=("127.0.0.2", 0), timeout=10) as c:
            assert c.read_reply()[0] == 220
            assert c.cmd("EHLO outside.example")[0] == 250
            assert c.cmd("MAIL FROM:<spammer@outside.example>")[0] == 250
            code, texts = c.cmd(f"RCPT TO:<victim{i}@remote.example>")
            assert code == 554 and "Relay access denied" in texts[-1], (code, texts)
            c.cmd("QUIT")
    inst.wait_delivered("alice", DELIVERED // 2)
    inst.wait_delivered("bob", DELIVERED - DELIVERED // 2)
    inst.wait_delivered("owner", BOUNCED, timeout=60)
    inst.wait_queue_empty(30)
    # Every line is in the file once the queue is empty and the DSNs are
    # delivered; give the last writers a moment anyway.
    inst.wait_log(r"status=sent", program="local", count=DELIVERED + BOUNCED)

    assert all(line.program.startswith(syslog_name + "/") for line in inst.log_lines())
    rc, report = run_logged([PFLOGSUMM, *options, str(inst.log)], 60)
    assert rc == 0, report
    totals = grand_totals(report)
    assert totals == {
        "received": DELIVERED + BOUNCED,
        "delivered": DELIVERED + BOUNCED,   # the DSNs to owner@localhost
        "forwarded": 0,
        "deferred": 0,
        "bounced": BOUNCED,
        "rejected": REJECTED,
    }, report
    assert "Relay access denied" in report, report
