"""After-queue content filtering on real instances, as Postfix's
FILTER_README sets it up:

    content_filter = scan:[127.0.0.1]:FPORT
    scan unix - - n - 2 smtp
    127.0.0.1:RPORT inet n - n - - smtpd -o content_filter=
        -o receive_override_options=... -o smtpd_authorized_xforward_hosts=...

Two filters: Debian's amavisd-new, started privately (its own home,
port and log, no scanners), and a small scripted SMTP server
(ScriptedFilter below) that does what amavisd-new does, but lets a test
see what it got and decide what it changes: it offers XFORWARD, takes the
message, adds a header, and sends it back to the reinjection smtpd with
XFORWARD carrying the original client, answering 250 only once the
reinjection was accepted. Checked: the message is changed by the filter,
delivered once, logged and Received: with the original client (SMTP and
LMTP filters, amavisd-new); XFORWARD's rights, syntax and replies (as the
installed Postfix gives them); the filter down defers and a flush
delivers once it is back; a FILTER action of an access table and of
header_checks; receive_override_options on the reinjection service; the
pipe filter that reinjects with sendmail.
"""

import os
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from dnsmasq_fixture import DnsServer
from policy_peers import PolicyServer
from postfix_reference import started_postfix
from postern_instance import (BUILD, DEFAULT_SERVICES, HELO, HOSTNAME, SENDER, RawSMTP,
                              free_port, parse_log, run_logged, simple_message,
                              stop_process, wait_until)


REINJECT_OPTS = ("-o content_filter= "
                 "-o receive_override_options=no_unknown_recipient_checks,"
                 "no_header_body_checks,no_address_mappings "
                 "-o smtpd_authorized_xforward_hosts=127.0.0.0/8 "
                 "-o smtpd_recipient_restrictions=permit_mynetworks,reject "
                 "-o mynetworks=127.0.0.0/8")


class ScriptedFilter:
    """An SMTP content filter on 127.0.0.1:port that reinjects to
    reinject_port. Keeps the XFORWARD attributes and envelope of every
    message it got (self.got)."""

    def __init__(self, port, reinject_port):
        self.port, self.reinject_port = port, reinject_port
        self.got = []
        self.rcpt_map = {}   # recipients the filter changes on the way back
        self.sock = None
        self.thread = None

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self):
        if self.sock:
            self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()
            self.sock = None
            self.thread.join(5)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        conn.settimeout(30)

        def say(line):
            conn.sendall(line.encode() + b"\r\n")

        xf, sender, rcpts = {}, None, []
        say("220 filter.test ESMTP scripted filter")
        try:
            for raw in f:
                line = raw.decode().rstrip("\r\n")
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "LHLO"):
                    say("250-filter.test")
                    say("250-XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT")
                    say("250 8BITMIME")
                elif verb == "XFORWARD":
                    for item in line.split()[1:]:
                        k, v = item.split("=", 1)
                        xf[k] = v
                    say("250 2.0.0 Ok")
                elif verb == "MAIL":
                    sender = re.search(r"<(.*?)>", line).group(1)
                    say("250 2.1.0 Ok")
                elif verb == "RCPT":
                    rcpts.append(re.search(r"<(.*?)>", line).group(1))
                    say("250 2.1.5 Ok")
                elif verb == "DATA":
                    say("354 go ahead")
                    body = []
                    for d in f:
                        if d in (b".\r\n", b".\n"):
                            break
                        body.append(d[1:] if d.startswith(b"..") else d)
                    data = b"X-Filtered: by scripted filter\r\n" + b"".join(body)
                    ok = self._reinject(xf, sender, rcpts, data)
                    self.got.append({"xforward": dict(xf), "sender": sender,
                                     "rcpts": list(rcpts)})
                    say("250 2.0.0 Ok: reinjected" if ok else "451 4.3.0 reinjection failed")
                    xf, sender, rcpts = {}, None, []
                elif verb == "RSET":
                    xf, sender, rcpts = {}, None, []
                    say("250 2.0.0 Ok")
                elif verb == "QUIT":
                    say("221 2.0.0 Bye")
                    break
                else:
                    say("502 5.5.2 unknown")
        except OSError:
            pass
        finally:
            conn.close()

    def _reinject(self, xf, sender, rcpts, data):
        try:
            with smtplib.SMTP("127.0.0.1", self.reinject_port, local_hostname="filter.test",
                              timeout=30) as s:
                s.ehlo()
                if not s.has_extn("xforward"):
                    return False
                first = " ".join(f"{k}={xf[k]}" for k in ("NAME", "ADDR", "PORT") if k in xf)
                second = " ".join(f"{k}={xf[k]}" for k in ("PROTO", "HELO", "IDENT", "SOURCE")
                                  if k in xf)
                for args in (first, second):
                    if args and s.docmd("XFORWARD", args)[0] != 250:
                        return False
                s.sendmail(sender, [self.rcpt_map.get(r, r) for r in rcpts], data)
                return True
        except (OSError, smtplib.SMTPException):
            return False


def filter_instance(make_instance, extra_main=(), smtpd_opts="", start_filter=True,
                    client="smtp"):
    """client: the delivery agent of the scan service, smtp or lmtp."""
    inst = make_instance(start=False)
    rport, fport = free_port(), free_port()
    inst.write_master_cf(
        f"127.0.0.1:{inst.port} inet n - n - - smtpd {smtpd_opts}\n"
        f"127.0.0.1:{rport} inet n - n - - smtpd {REINJECT_OPTS}\n"
        f"scan unix - - n - 2 {client}\n" + DEFAULT_SERVICES)
    hc = inst.etc / "header_checks"
    hc.write_text("/^X-Filtered:/ REJECT seen by the first smtpd only\n")
    inst.append_main_cf(f"content_filter = scan:[127.0.0.1]:{fport}",
                        f"{client}_send_xforward_command = yes",
                        f"header_checks = regexp:{hc}", *extra_main)
    filt = ScriptedFilter(fport, rport)
    if start_filter:
        filt.start()
    inst.start()
    inst.rport, inst.fport = rport, fport
    return inst, filt


def send_from(inst, source, msg, rcpt="alice@localhost", ports=None):
    """The queue id; the client's port is appended to ports when given."""
    with smtplib.SMTP("127.0.0.1", inst.port, local_hostname=HELO, timeout=30,
                      source_address=(source, 0)) as s:
        if ports is not None:
            ports.append(str(s.sock.getsockname()[1]))
        s.ehlo(HELO)
        s.mail(SENDER)
        code, _ = s.rcpt(rcpt)
        assert code == 250
        code, resp = s.data(msg.replace("\n", "\r\n").encode())
        assert code == 250, resp
        return resp.decode().rsplit(" ", 1)[1]


@pytest.mark.parametrize("client", ["smtp", "lmtp"])
def test_message_through_filter_and_back(make_instance, client):
    inst, filt = filter_instance(make_instance, client=client)
    try:
        ports = []
        qid = send_from(inst, "127.0.0.2", simple_message("through the filter"), ports=ports)
        [copy] = inst.wait_delivered("alice")
        data = copy.read_bytes().decode()
        # changed by the filter, and the first smtpd's header_checks did
        # not see the filter's header: the reinjection has
        # no_header_body_checks.
        assert "\nX-Filtered: by scripted filter\n" in data, data[:600]
        # remote sent the original client with XFORWARD...
        [got] = filt.got
        assert got["xforward"]["ADDR"] == "127.0.0.2"
        assert got["xforward"]["PORT"] == ports[0]   # kept in the queue file
        assert got["xforward"]["HELO"] == HELO
        assert got["xforward"]["IDENT"] == qid
        assert got["xforward"]["SOURCE"] == "REMOTE"
        assert got["xforward"]["PROTO"] == "ESMTP"
        # ... and the reinjection smtpd logged and wrote it.
        line = inst.wait_log(r"client=\S+\[127\.0\.0\.1\], orig_queue_id=" + qid
                             + r", orig_client=\S+\[127\.0\.0\.2\]$", program="smtpd")[0]
        new_id = line.text.split(":", 1)[0]
        assert new_id != qid
        # As with Postfix, the reinjection's Received: names the filter it
        # came from, and the first smtpd's, below it, the original client.
        received = re.findall(r"^Received: .*(?:\n\t.*)*", data, re.M)
        assert received[0].startswith("Received: from filter.test (unknown [127.0.0.1])\n"
                                      f"\tby {HOSTNAME} (Postern) with ESMTP id {new_id}"), received
        assert received[1].startswith(f"Received: from {HELO} (unknown [127.0.0.2])\n"
                                      f"\tby {HOSTNAME} (Postern) with ESMTP id {qid}"), received
        # the first message went to the filter, not to alice
        inst.wait_log(rf"{qid}: to=<alice@localhost>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                      rf"{inst.fport}, .*status=sent", program=client)
        inst.wait_queue_empty()
        time.sleep(0.5)
        assert len(inst.delivered("alice")) == 1   # delivered once
        disc = inst.wait_log(r"disconnect from \S+\[127\.0\.0\.1\] ehlo=1 xforward=2 "
                             r"mail=1 rcpt=1 data=1 quit=1 commands=7", program="smtpd")
        assert disc
    finally:
        filt.stop()


def test_filter_down_defers_then_delivers(make_instance):
    inst, filt = filter_instance(make_instance, start_filter=False)
    try:
        qid = send_from(inst, "127.0.0.3", simple_message("filter down"))
        inst.wait_log(rf"{qid}: to=<alice@localhost>, relay=none, .*status=deferred",
                      program="smtp")
        assert inst.queue_files(), "the message waits in the queue"
        # the queue file says where it goes, and postcat shows it as Postfix's does
        rc, out = run_logged([str(BUILD / "bin" / "postcat"), "-c", str(inst.etc), "-q", qid], 30)
        assert rc == 0 and f"content_filter: scan:[127.0.0.1]:{inst.fport}\n" in out, out
        assert not inst.delivered("alice")
        filt.start()
        inst.wait_deferred(qid)
        rc, out = inst.postern("flush")
        assert rc == 0, out
        [copy] = inst.wait_delivered("alice", timeout=60)
        assert b"X-Filtered: by scripted filter" in copy.read_bytes()
        inst.wait_queue_empty()
        [got] = filt.got
        assert got["xforward"]["ADDR"] == "127.0.0.3"
    finally:
        filt.stop()


# Commands and the replies Postfix 3.7's smtpd gives them (checked against
# the installed Postfix in test_xforward_replies_as_postfix).
XFORWARD_DIALOGUE = ["XFORWARD", "XFORWARD FOO=1", "XFORWARD ADDR=not-an-address",
                     "XFORWARD PORT=70000", "XFORWARD SOURCE=ELSEWHERE", "XFORWARD HELO=a+20b",
                     "XFORWARD NAME", f"MAIL FROM:<{SENDER}>", "XFORWARD HELO=late"]
XFORWARD_REPLIES = [(501, ["5.5.4 Syntax: XFORWARD attribute=value..."]),
                    (501, ["5.5.4 Bad XFORWARD attribute name: FOO"]),
                    (501, ["5.5.4 Bad ADDR syntax: not-an-address"]),
                    (250, ["2.0.0 Ok"]),
                    (501, ["5.5.4 Bad SOURCE syntax: ELSEWHERE"]),
                    (250, ["2.0.0 Ok"]),
                    (501, ["5.5.4 Error: attribute=value expected"]),
                    (250, ["2.1.0 Ok"]),
                    (503, ["5.5.1 Error: MAIL transaction in progress"])]


def test_xforward_replies_as_postfix():
    pf = started_postfix(["smtpd_authorized_xforward_hosts = 127.0.0.0/8"])
    try:
        with RawSMTP(pf.port) as c:
            c.read_reply()
            code, texts = c.cmd("EHLO x.test")
            assert "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT" in texts
            assert [c.cmd(cmd) for cmd in XFORWARD_DIALOGUE] == XFORWARD_REPLIES
    finally:
        pf.cleanup()


def test_xforward_rights_and_syntax(make_instance):
    inst, filt = filter_instance(make_instance)
    try:
        # the main smtpd authorizes nobody: no keyword, 550
        with RawSMTP(inst.port) as c:
            c.read_reply()
            code, texts = c.cmd("EHLO x.test")
            assert not any(t.startswith("XFORWARD") for t in texts), texts
            assert c.cmd("XFORWARD NAME=a.test") == (
                550, ["5.7.0 Error: insufficient authorization"])
        with RawSMTP(inst.rport) as c:
            c.read_reply()
            code, texts = c.cmd("EHLO x.test")
            assert "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT" in texts, texts
            # (Postfix's oracle runs with inet_protocols = ipv4 and refuses this one)
            assert c.cmd("XFORWARD NAME=[UNAVAILABLE] ADDR=IPv6:2001:db8::1") == (
                250, ["2.0.0 Ok"])
            assert [c.cmd(cmd) for cmd in XFORWARD_DIALOGUE] == XFORWARD_REPLIES
    finally:
        filt.stop()


def test_authorized_xforward_hosts_by_name(make_instance):
    """smtpd_authorized_xforward_hosts takes host names and .domains, as
    Postfix's host lists do, matched against the client's verified name:
    Postern's from the tests' DNS, Postfix's (which cannot be pointed at
    it) from /etc/hosts, where 127.0.0.1 is localhost."""
    dns = DnsServer(hosts=[("filter.test", "127.0.0.2"), ("a.trusted.test", "127.0.0.3"),
                           ("trusted.test", "127.0.0.4")])
    dns.start()
    pf = None
    try:
        inst = make_instance([f"dns_servers = {dns.servers}",
                              "smtpd_authorized_xforward_hosts = filter.test, .trusted.test"])
        pf = started_postfix(["smtpd_authorized_xforward_hosts = localhost"])
        for port, source, allowed in [(inst.port, "127.0.0.2", True),
                                      (inst.port, "127.0.0.3", True),
                                      (inst.port, "127.0.0.4", False),
                                      (pf.port, "127.0.0.1", True), (pf.port, "127.0.0.2", False)]:
            with RawSMTP(port, source=(source, 0)) as c:
                c.read_reply()
                texts = c.cmd("EHLO x.test")[1]
                assert any(t.startswith("XFORWARD") for t in texts) == allowed, (port, source)
                assert c.cmd("XFORWARD NAME=a.test") == (
                    (250, ["2.0.0 Ok"]) if allowed
                    else (550, ["5.7.0 Error: insufficient authorization"])), (port, source)
    finally:
        if pf:
            print(pf.log_tail(20))
            pf.cleanup()
        dns.stop()


def test_filter_action_of_access_table_and_header_checks(make_instance):
    """No global content_filter: a FILTER action routes one message."""
    inst, filt = filter_instance(make_instance, extra_main=["content_filter ="])
    try:
        fport = inst.fport
        (inst.etc / "access").write_text(f"bob@localhost FILTER scan:[127.0.0.1]:{fport}\n")
        (inst.etc / "header_checks").write_text(
            f"/^Subject: filter-me/ FILTER scan:[127.0.0.1]:{fport}\n")
        inst.append_main_cf(
            f"smtpd_recipient_restrictions = check_recipient_access texthash:{inst.etc}/access, "
            "permit_mynetworks, reject_unauth_destination")
        inst.postern("reload")
        time.sleep(1)
        qid = send_from(inst, "127.0.0.1", simple_message("plain"), rcpt="bob@localhost")
        inst.wait_log(rf"NOQUEUE: filter: RCPT from \S+\[127\.0\.0\.1\]: <bob@localhost>: "
                      rf"Recipient address triggers FILTER scan:\[127\.0\.0\.1\]:{fport}; "
                      rf"from=<{SENDER}> to=<bob@localhost> proto=ESMTP helo=<{HELO}>",
                      program="smtpd")
        [copy] = inst.wait_delivered("bob")
        assert b"X-Filtered: by scripted filter" in copy.read_bytes()
        # a message to alice goes straight to her
        send_from(inst, "127.0.0.1", simple_message("not filtered"))
        [plain] = inst.wait_delivered("alice")
        assert b"X-Filtered" not in plain.read_bytes()
        # header_checks FILTER
        qid = send_from(inst, "127.0.0.1", simple_message("filter-me please"))
        inst.wait_log(rf"{qid}: filter: header Subject: filter-me please from \S+; "
                      rf"from=<{SENDER}> to=<alice@localhost> proto=ESMTP helo=<{HELO}>: "
                      rf"scan:\[127\.0\.0\.1\]:{fport}", program="cleanup")
        copies = inst.wait_delivered("alice", count=2)
        assert sum(b"X-Filtered" in c.read_bytes() for c in copies) == 1
        assert len(filt.got) == 2
    finally:
        filt.stop()


FILTER_SCRIPT = r'''#!/bin/sh
# A pipe content filter: add a header, give the message back to Postern.
# argv: SENDMAIL -f SENDER -- RECIPIENT...
sendmail=$1; shift
{ printf 'X-Pipe-Filtered: yes\n'; cat; } | "$sendmail" -G -i "$@"
'''


def test_pipe_filter_reinjects_with_sendmail(make_instance):
    inst = make_instance(start=False)
    script = inst.root / "filter.sh"
    script.write_text(FILTER_SCRIPT)
    os.chmod(script, 0o755)
    inst.write_master_cf(
        f"127.0.0.1:{inst.port} inet n - n - - smtpd -o content_filter=filter:dummy\n"
        "filter unix - n n - 10 pipe flags=Rq user=nobody null_sender=\n"
        f"  argv={script} {BUILD}/bin/sendmail -f ${{sender}} -- ${{recipient}}\n"
        + DEFAULT_SERVICES)
    inst.start()
    qid = inst.send(simple_message("pipe filter"), ["alice@localhost"])
    inst.wait_log(rf"{qid}: to=<alice@localhost>, relay=filter, .*status=sent", program="pipe")
    [copy] = inst.wait_delivered("alice")
    data = copy.read_bytes()
    assert data.count(b"X-Pipe-Filtered: yes\n") == 1, data[:400]
    inst.wait_queue_empty()
    time.sleep(0.5)
    assert len(inst.delivered("alice")) == 1
    # the reinjected copy came through pickup: a new queue id, not filtered again
    wait_until(lambda: inst.find_log(r"uid=\d+ from=<" + re.escape(SENDER) + ">",
                                     program="pickup"), 10, what="pickup line")


def test_reinjection_without_address_mappings(make_instance):
    """The reinjection service has no_address_mappings: a recipient the
    filter chose is not mapped (canonical_maps would send dave's mail to
    erin)."""
    inst, filt = filter_instance(
        make_instance, extra_main=["canonical_maps = inline:{ dave@localhost=erin@localhost }"])
    filt.rcpt_map = {"alice@localhost": "dave@localhost"}
    try:
        send_from(inst, "127.0.0.1", simple_message("mapped by the filter"))
        [copy] = inst.wait_delivered("dave")
        assert b"X-Filtered: by scripted filter" in copy.read_bytes()
        inst.wait_queue_empty()
        assert not inst.delivered("erin") and not inst.delivered("alice")
    finally:
        filt.stop()


AMAVISD_CONF = """use strict;
$MYHOME = '{home}';
$TEMPBASE = "$MYHOME/tmp";
$db_home = "$MYHOME/db";
$helpers_home = "$MYHOME/var";
$lock_file = "$MYHOME/amavisd.lock";
$pid_file = "$MYHOME/amavisd.pid";
$daemon_user = 'amavis';
$daemon_group = 'amavis';
$mydomain = 'test.example';
$myhostname = 'amavis.test.example';
$max_servers = 1;
$inet_socket_port = {port};
$inet_socket_bind = '127.0.0.1';
@inet_acl = qw(127.0.0.1);
$forward_method = 'smtp:[127.0.0.1]:{reinject}';
$notify_method = $forward_method;
@bypass_virus_checks_maps = (1);
@bypass_spam_checks_maps = (1);
@bypass_banned_checks_maps = (1);
@bypass_header_checks_maps = (0);
$final_bad_header_destiny = D_PASS;
$enable_dkim_verification = 0;
$enable_dkim_signing = 0;
$DO_SYSLOG = 0;
$LOGFILE = "$MYHOME/amavis.log";
$log_level = 2;
@local_domains_maps = (1);
@av_scanners = ();
@av_scanners_backup = ();
@mynetworks = qw(127.0.0.0/8);
1;
"""


def test_amavisd_new_as_filter(make_instance, tmp_path):
    """Debian's amavisd-new, started privately (its own home, port and
    log; no scanners, header checks on), as the content filter."""
    inst, filt = filter_instance(make_instance, start_filter=False)
    # The configuration in a directory amavis may not write (amavisd
    # refuses one it could change), its home in one it owns.
    top = Path(tempfile.mkdtemp(prefix="amavis.", dir="/tmp"))
    os.chmod(top, 0o755)
    home = top / "home"
    amavis = pwd.getpwnam("amavis")
    for d in (home, home / "tmp", home / "db", home / "var"):
        d.mkdir()
        os.chown(d, amavis.pw_uid, amavis.pw_gid)
    conf = top / "amavisd.conf"
    conf.write_text(AMAVISD_CONF.replace("{home}", str(home))
                    .replace("{port}", str(inst.fport)).replace("{reinject}", str(inst.rport)))
    proc = subprocess.Popen(["amavisd", "-c", str(conf), "foreground"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        log = home / "amavis.log"

        def started():
            assert proc.poll() is None, "amavisd exited:\n" + log.read_text(errors="replace")
            return log.exists() and b"Initialization done" in log.read_bytes()
        wait_until(started, 60, what="amavisd's start")
        qid = send_from(inst, "127.0.0.7", simple_message("through amavisd-new"))
        [copy] = inst.wait_delivered("alice", timeout=60)
        data = copy.read_bytes().decode("utf-8", "replace")
        line = inst.wait_log(r"client=\S+\[127\.0\.0\.1\], orig_queue_id=" + qid
                             + r", orig_client=\S+\[127\.0\.0\.7\]$", program="smtpd")[0]
        new_id = line.text.split(":", 1)[0]
        received = re.findall(r"^Received: .*(?:\n[ \t].*)*", data, re.M)
        # the reinjection's header, amavisd-new's (the filter changed the
        # message), the first smtpd's with the original client
        assert f"with ESMTP id {new_id}" in received[0], received
        assert "(amavis, port" in received[1], received
        assert received[2].startswith(f"Received: from {HELO} (unknown [127.0.0.7])\n"
                                      f"\tby {HOSTNAME} (Postern) with ESMTP id {qid}"), received
        # amavisd-new got the original client from remote's XFORWARD
        assert re.search(r"Checking: \S+ \[127\.0\.0\.7\] <", log.read_text(errors="replace"))
        inst.wait_queue_empty()
        time.sleep(0.5)
        assert len(inst.delivered("alice")) == 1
    finally:
        stop_process(proc, 20)
        print((home / "amavis.log").read_text(errors="replace")[-3000:]
              if (home / "amavis.log").exists() else "(no amavis log)")
        shutil.rmtree(top, ignore_errors=True)


XFORWARD_SESSION = ["EHLO filter.test", "XFORWARD NAME=mail.example.com ADDR=192.0.2.9 PORT=4000",
                    "XFORWARD PROTO=ESMTP HELO=orig.example IDENT=ABC123 SOURCE=REMOTE",
                    "MAIL FROM:<a@b.example>", "RCPT TO:<{rcpt}>", "DATA"]


def reinject_raw(port, rcpt):
    """One reinjection as a filter makes it; returns the queue id."""
    with RawSMTP(port) as c:
        c.read_reply()
        for cmd in XFORWARD_SESSION:
            c.cmd(cmd.replace("{rcpt}", rcpt))
        c.send(b"Subject: reinjected\r\n\r\nbody\r\n.\r\n")
        code, texts = c.read_reply()
        assert code == 250, texts
        c.cmd("QUIT")
        return texts[0].rsplit(" ", 1)[1]


def normalized(texts):
    """Log lines without queue ids and client names (the test's DNS knows
    no names, Postfix's resolver finds localhost)."""
    return [re.sub(r"(from |client=)\S+\[", r"\1[", re.sub(r"^\w+: ", "", t)) for t in texts]


def test_reinjection_log_and_received_as_postfix(make_instance):
    """The reinjection smtpd's client= and disconnect lines and its
    Received: header, next to what Postfix 3.7's smtpd writes for the same
    session."""
    inst, filt = filter_instance(make_instance)
    pf = started_postfix(["smtpd_authorized_xforward_hosts = 127.0.0.0/8"])
    try:
        qid = reinject_raw(inst.rport, "alice@localhost")
        pf_qid = reinject_raw(pf.port, "x@remote.example")
        ours = [inst.wait_log(rf"^{qid}: client=", program="smtpd")[0].text,
                inst.wait_log(r"disconnect from \S+\[127\.0\.0\.1\] ehlo=1 xforward=2",
                              program="smtpd")[0].text]
        lines = wait_until(lambda: (lambda t: t if len(t) == 2 else None)(
            [l.text for l in parse_log(pf.log) if l.program.endswith("/smtpd") and (
                l.text.startswith(f"{pf_qid}: client=") or "xforward=2" in l.text)]),
            15, what="Postfix's smtpd lines")
        assert normalized(ours) == normalized(lines), (ours, lines)
        assert "orig_queue_id=ABC123, orig_client=mail.example.com[192.0.2.9]" in ours[0]
        [copy] = inst.wait_delivered("alice")
        ours_rcvd = copy.read_bytes().decode().split("Received: ", 1)[1].split("\n", 1)[0]
        theirs = pf.postcat("-q", pf_qid)[1].decode().split("Received: ", 1)[1].split("\n", 1)[0]
        assert ours_rcvd == "from filter.test (unknown [127.0.0.1])"
        assert theirs == "from filter.test (localhost [127.0.0.1])"
    finally:
        pf.cleanup()
        filt.stop()


def xforward_lifetime(port, rcpt):
    """XFORWARD, then RSET / EHLO / NOOP, then two messages each time."""
    for between in ("RSET", "EHLO again.test", "NOOP"):
        with RawSMTP(port) as c:
            c.read_reply()
            c.cmd("EHLO filter.test")
            c.cmd(f"XFORWARD NAME=mail.example.com ADDR=192.0.2.9 IDENT=ID{between[:4]}")
            assert c.cmd(between)[0] == 250
            for _ in range(2):
                c.cmd("MAIL FROM:<a@b.example>")
                c.cmd(f"RCPT TO:<{rcpt}>")
                c.cmd("DATA")
                c.send(b"Subject: t\r\n\r\nbody\r\n.\r\n")
                assert c.read_reply()[0] == 250
            c.cmd("QUIT")


def test_xforward_lifetime_as_postfix(make_instance):
    """XFORWARD's attributes last for one transaction, and RSET and EHLO
    forget them: the client= lines as Postfix writes them."""
    inst, filt = filter_instance(make_instance)
    pf = started_postfix(["smtpd_authorized_xforward_hosts = 127.0.0.0/8"])
    try:
        xforward_lifetime(inst.rport, "alice@localhost")
        xforward_lifetime(pf.port, "x@remote.example")
        ours = [l.text for l in inst.wait_log(r"^\w+: client=", program="smtpd", count=6)]
        theirs = wait_until(lambda: (lambda t: t if len(t) == 6 else None)(
            [l.text for l in parse_log(pf.log)
             if l.program.endswith("/smtpd") and re.match(r"^\w+: client=", l.text)]),
            15, what="Postfix's client= lines")
        assert normalized(ours) == normalized(theirs), (ours, theirs)
        assert sum("orig_queue_id=IDNOOP" in t for t in ours) == 1
    finally:
        pf.cleanup()
        filt.stop()


def test_filter_action_of_a_policy_service(make_instance):
    """A policy service's FILTER answer routes the message as an access
    table's does (issue 19: every access(5) action in a policy answer)."""
    inst, filt = filter_instance(make_instance, extra_main=["content_filter ="])
    fport = inst.fport
    srv = PolicyServer(lambda req: f"FILTER scan:[127.0.0.1]:{fport}"
                       if req.get("recipient") == "bob@localhost" else "DUNNO")
    try:
        inst.append_main_cf(
            f"smtpd_recipient_restrictions = check_policy_service {srv.endpoint}, "
            "permit_mynetworks, reject_unauth_destination")
        inst.postern("reload")
        time.sleep(1)
        send_from(inst, "127.0.0.1", simple_message("policy filter"), rcpt="bob@localhost")
        inst.wait_log(rf"NOQUEUE: filter: RCPT from \S+\[127\.0\.0\.1\]: <bob@localhost>: "
                      rf"Recipient address triggers FILTER scan:\[127\.0\.0\.1\]:{fport}; ",
                      program="smtpd")
        [copy] = inst.wait_delivered("bob")
        assert b"X-Filtered: by scripted filter" in copy.read_bytes()
        send_from(inst, "127.0.0.1", simple_message("no filter"))
        [plain] = inst.wait_delivered("alice")
        assert b"X-Filtered" not in plain.read_bytes()
        assert len(filt.got) == 1
    finally:
        srv.close()
        filt.stop()
