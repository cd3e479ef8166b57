"""anvil (issue 19): smtpd_client_connection_count_limit,
smtpd_client_connection_rate_limit, smtpd_client_message_rate_limit,
smtpd_client_recipient_rate_limit, smtpd_client_new_tls_session_rate_limit
and smtpd_client_auth_rate_limit counted by the anvil service for every
smtpd process of a service, within anvil_rate_time_unit, with Postfix's
replies and warnings; anvil's "statistics:" lines every
anvil_status_update_time; a client in smtpd_client_event_limit_exceptions
is never limited; without an anvil service smtpd warns and serves every
client. The same sessions against the installed Postfix give the same
replies and warning lines, and fail2ban's stock postfix filter counts
the same lines in both logs."""

import os
import re
import smtplib
import socket
import ssl
import subprocess
import time

from postern_instance import HELO, HOSTNAME, LIBEXEC, SENDER, RawSMTP, free_port, wait_until
from postfix_reference import started_postfix
from smtpd_fixture import (client_context, make_cert, master_cf, plain_response, sasl_lines,
                           tls_lines)
from test_system_fail2ban import FILTER, fail2ban, smtpd_texts


def greeting(inst):
    with RawSMTP(inst.port) as c:
        reply = c.read_reply()
        if reply[0] == 220:
            assert c.cmd("QUIT")[0] == 221
        return reply


def start(make_instance, anvil=True, extra=(), limit="smtpd_client_connection_rate_limit",
          wrapper_port=None):
    inst = make_instance(start=False)
    inst.write_master_cf(master_cf(inst.port, wrapper_port) +
                         ("anvil unix - - n - 1 anvil\n" if anvil else ""))
    inst.append_main_cf(f"{limit} = 2", "anvil_rate_time_unit = 3s",
                        "anvil_status_update_time = 1s", *extra)
    inst.start()
    # start() probed the port: a connection anvil counted. Begin in a new
    # rate window.
    time.sleep(3.2)
    return inst


def test_connection_rate_limit(make_instance):
    inst = start(make_instance, extra=["smtpd_client_event_limit_exceptions ="])
    assert greeting(inst)[0] == 220
    assert greeting(inst)[0] == 220
    code, lines = greeting(inst)
    assert code == 421, lines
    assert lines[0].endswith(" Error: too many connections from 127.0.0.1"), lines
    inst.wait_log(r"^warning: Connection rate limit exceeded: 3 from unknown\[127\.0\.0\.1\] "
                  r"for service \S+$", program="smtpd")
    # anvil's peaks, as Postfix's anvil logs them.
    inst.wait_log(r"^statistics: max connection rate 3/3s for \(127\.0\.0\.1:\d+:127\.0\.0\.1\) "
                  r"at \w{3} [ \d]\d \d\d:\d\d:\d\d$", program="anvil")
    inst.wait_log(r"^statistics: max connection count 1 for \(127\.0\.0\.1:\d+:127\.0\.0\.1\) "
                  r"at ", program="anvil")
    # A new rate window: accepted again.
    time.sleep(3.5)
    assert greeting(inst)[0] == 220


def test_exceptions_are_never_limited(make_instance, tmp_path):
    """Every limit at 1; 127.0.0.1 is in mynetworks, the default
    smtpd_client_event_limit_exceptions: nothing is refused."""
    cert, key = make_cert(tmp_path)
    limits = [f"{p} = 1" for p in ("smtpd_client_connection_count_limit",
                                   "smtpd_client_message_rate_limit",
                                   "smtpd_client_recipient_rate_limit",
                                   "smtpd_client_new_tls_session_rate_limit",
                                   "smtpd_client_auth_rate_limit")]
    inst = start(make_instance, extra=[*limits, *tls_lines(cert, key), "smtpd_tls_auth_only = no",
                                       *sasl_lines({"alice": "pw"})])
    held = [RawSMTP(inst.port) for _ in range(3)]
    try:
        for c in held:
            assert c.read_reply()[0] == 220
        c = held[0]
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        for _ in range(2):
            assert c.cmd("AUTH PLAIN " + plain_response("alice", "wrong"))[0] == 535
        for _ in range(3):
            assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
            for r in ("alice", "bob"):
                assert c.cmd(f"RCPT TO:<{r}@localhost>")[0] == 250
            assert c.cmd("RSET")[0] == 250
    finally:
        for c in held:
            c.close()
    for _ in range(3):
        with smtplib.SMTP("127.0.0.1", inst.port, local_hostname=HELO, timeout=15) as smtp:
            assert smtp.starttls(context=client_context())[0] == 220
            assert smtp.ehlo()[0] == 250
    assert not inst.find_log(r"limit exceeded|Refusing", program="smtpd")


def test_without_anvil_service_no_limit(make_instance):
    inst = start(make_instance, anvil=False, extra=["smtpd_client_event_limit_exceptions ="])
    for _ in range(4):
        assert greeting(inst)[0] == 220
    assert inst.find_log(r"^warning: connect to private/anvil: .*; client rate limits not "
                         r"enforced$", program="smtpd")


def test_message_rate_limit(make_instance):
    inst = start(make_instance, extra=["smtpd_client_event_limit_exceptions ="],
                 limit="smtpd_client_message_rate_limit")
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        for _ in range(2):
            assert c.cmd(f"MAIL FROM:<{SENDER}>") == (250, ["2.1.0 Ok"])
            assert c.cmd("RSET")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>") == (
            450, ["4.7.1 Error: too much mail from 127.0.0.1"])
        # No transaction was opened: RCPT needs MAIL.
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 503
        assert c.cmd("QUIT")[0] == 221
    inst.wait_log(r"^warning: Message delivery request rate limit exceeded: 3 from "
                  r"unknown\[127\.0\.0\.1\] for service \S+$", program="smtpd")


def test_recipient_rate_limit(make_instance):
    inst = start(make_instance, extra=["smtpd_client_event_limit_exceptions ="],
                 limit="smtpd_client_recipient_rate_limit")
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        # Pipelined: answered in order, the third over the limit.
        c.send(b"RCPT TO:<alice@localhost>\r\nRCPT TO:<bob@localhost>\r\n"
               b"RCPT TO:<carol@localhost>\r\n")
        assert c.read_reply() == (250, ["2.1.5 Ok"])
        assert c.read_reply() == (250, ["2.1.5 Ok"])
        assert c.read_reply() == (450, ["4.7.1 Error: too many recipients from 127.0.0.1"])
        assert c.cmd("QUIT")[0] == 221
    inst.wait_log(r"^warning: Recipient address rate limit exceeded: 3 from "
                  r"unknown\[127\.0\.0\.1\] for service \S+$", program="smtpd")


def second_smtpd(inst, service):
    """A second smtpd process of the same service, started as master
    starts one (its listener on fd 3, status pipe on 4, alive pipe on 5),
    on a listener of its own; returns (process, port, the alive pipe's
    write end)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    status_r, status_w = os.pipe()
    alive_r, alive_w = os.pipe()
    fds = (lsock.fileno(), status_w, alive_r)

    def child_fds():
        for want, fd in zip((3, 4, 5), (os.dup(f) for f in fds)):
            os.dup2(fd, want)
    p = subprocess.Popen([str(LIBEXEC / "smtpd"), "-c", str(inst.etc), "-n", service, "-t",
                          "inet"], preexec_fn=child_fds, pass_fds=(3, 4, 5),
                         stdin=subprocess.DEVNULL)
    port = lsock.getsockname()[1]
    for fd in (status_w, alive_r):
        os.close(fd)
    lsock.close()
    os.set_blocking(status_r, False)
    return p, port, alive_w, status_r


def test_connection_count_limit_across_processes(make_instance):
    """smtpd_client_connection_count_limit = 2: a client with one session
    on each of two smtpd processes of the service gets 421 for a third,
    and is served again once one ends."""
    inst = start(make_instance, extra=["smtpd_client_event_limit_exceptions ="],
                 limit="smtpd_client_connection_count_limit")
    service = f"127.0.0.1:{inst.port}"
    p, port2, alive_w, status_r = second_smtpd(inst, service)
    try:
        first = RawSMTP(inst.port)
        assert first.read_reply()[0] == 220
        second = RawSMTP(port2)
        assert second.read_reply()[0] == 220
        with RawSMTP(port2) as third:
            code, lines = third.read_reply()
        assert code == 421 and lines[0].endswith(" Error: too many connections from 127.0.0.1")
        inst.wait_log(r"^warning: Connection concurrency limit exceeded: 3 from "
                      rf"unknown\[127\.0\.0\.1\] for service {re.escape(service)}$",
                      program="smtpd")
        first.close()
        # anvil hears of the first session's end from the other process.
        wait_until(lambda: greeting_on(port2)[0] == 220, 10, interval=0.2,
                   what="a session again once one ended")
        second.close()
    finally:
        os.close(alive_w)
        os.close(status_r)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def greeting_on(port):
    with RawSMTP(port) as c:
        reply = c.read_reply()
        if reply[0] == 220:
            c.cmd("QUIT")
        return reply


def test_auth_rate_limit(make_instance):
    # A failed AUTH is answered after a pause: a window that outlasts them.
    inst = start(make_instance, limit="smtpd_client_auth_rate_limit",
                 extra=["smtpd_client_event_limit_exceptions =", "smtpd_tls_auth_only = no",
                        "anvil_rate_time_unit = 30s", *sasl_lines({"alice": "pw"})])
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        for _ in range(2):
            assert c.cmd("AUTH PLAIN " + plain_response("alice", "wrong"))[0] == 535
        assert c.cmd("AUTH PLAIN " + plain_response("alice", "pw")) == (
            450, ["4.7.1 Error: too many AUTH commands from 127.0.0.1"])
        assert c.cmd("QUIT")[0] == 221
    inst.wait_log(r"^warning: AUTH command rate limit exceeded: 3 from unknown\[127\.0\.0\.1\] "
                  r"for service \S+$", program="smtpd")
    inst.wait_log(r"^statistics: max auth rate 3/30s for ", program="anvil")


def test_new_tls_session_rate_limit(make_instance, tmp_path):
    """Limit 2: the third new TLS session is refused once made (421), the
    fourth STARTTLS before any handshake (454), as Postfix does."""
    cert, key = make_cert(tmp_path)
    inst = start(make_instance, limit="smtpd_client_new_tls_session_rate_limit",
                 extra=["smtpd_client_event_limit_exceptions =", "anvil_rate_time_unit = 30s",
                        *tls_lines(cert, key)])

    def starttls():
        smtp = smtplib.SMTP("127.0.0.1", inst.port, local_hostname=HELO, timeout=15)
        try:
            try:
                smtp.starttls(context=client_context())
            except smtplib.SMTPResponseException as e:
                return e.smtp_code, None
            return 220, smtp.ehlo()
        finally:
            smtp.close()
    for _ in range(2):
        code, after = starttls()
        assert code == 220 and after[0] == 250, after
    code, after = starttls()
    assert code == 220 and after[0] == 421, after
    assert after[1].decode().endswith(
        " Error: too many new TLS sessions from unknown[127.0.0.1]"), after
    inst.wait_log(r"^warning: New TLS session rate limit exceeded: 3 from "
                  r"unknown\[127\.0\.0\.1\] for service \S+$", program="smtpd")
    assert starttls() == (454, None)
    inst.wait_log(r"^warning: Refusing STARTTLS request from unknown\[127\.0\.0\.1\] for "
                  r"service \S+$", program="smtpd")
    inst.wait_log(r"^statistics: max newtls rate 3/30s for ", program="anvil")


def test_wrapper_mode_new_tls_session_rate_limit(make_instance, tmp_path):
    """Wrapper mode (port 465 style), limit 2: the third new session is
    refused once made (421), the fourth gets no handshake at all."""
    cert, key = make_cert(tmp_path)
    wport = free_port()
    inst = start(make_instance, limit="smtpd_client_new_tls_session_rate_limit",
                 wrapper_port=wport,
                 extra=["smtpd_client_event_limit_exceptions =", "anvil_rate_time_unit = 30s",
                        *tls_lines(cert, key)])

    def wrapped():
        with socket.create_connection(("127.0.0.1", wport), timeout=15) as raw:
            try:
                with client_context().wrap_socket(raw) as tls:
                    return tls.recv(200).decode()
            except (ssl.SSLError, ConnectionError) as e:
                return e
    for _ in range(2):
        assert wrapped().startswith("220 ")
    second = wrapped()
    assert second.startswith("421 4.7.0 ") and second.rstrip().endswith(
        "Error: too many new TLS sessions from unknown[127.0.0.1]"), second
    assert isinstance(wrapped(), Exception)
    inst.wait_log(r"^warning: Refusing TLS service request from unknown\[127\.0\.0\.1\] for "
                  rf"service 127\.0\.0\.1:{wport}$", program="smtpd")



# Limits and restrictions both MTAs are given; 127.0.0.2 is outside
# mynetworks, so limited.
ORACLE_MAIN = ["mynetworks = 127.0.0.1/32", "smtpd_client_connection_rate_limit = 2",
               "smtpd_client_recipient_rate_limit = 2", "anvil_rate_time_unit = 60s",
               "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
               "smtpd_data_restrictions = reject_unauth_pipelining"]


def limited_sessions(port):
    """Sessions from 127.0.0.2 that meet the limits; the replies, with
    the server's name as HOST."""
    replies = []
    with RawSMTP(port, source=("127.0.0.2", 0), timeout=15) as c:
        assert c.read_reply()[0] == 220
        # HELO, then MAIL sent ahead: improper pipelining, refused at DATA.
        c.send(f"HELO {HELO}\r\nMAIL FROM:<{SENDER}>\r\n".encode())
        c.read_reply()
        replies.append(c.read_reply())
        replies.append(c.cmd(f"RCPT TO:<root@{HOSTNAME}>"))
        replies.append(c.cmd("DATA"))
        c.cmd("QUIT")
    with RawSMTP(port, source=("127.0.0.2", 0), timeout=15) as c:
        assert c.read_reply()[0] == 220
        c.cmd(f"EHLO {HELO}")
        replies.append(c.cmd(f"MAIL FROM:<{SENDER}>"))
        replies.append(c.cmd("RCPT TO:<victim@remote.example>"))   # relay denied
        replies.append(c.cmd("RCPT TO:<other@remote.example>"))    # relay denied
        replies.append(c.cmd("RCPT TO:<other@remote.example>"))    # recipient rate
        c.cmd("QUIT")
    with RawSMTP(port, source=("127.0.0.2", 0), timeout=15) as c:
        replies.append(c.read_reply())                               # connection rate
    return [(code, [re.sub(r"^\S+ Error:", "HOST Error:", t) for t in texts])
            for code, texts in replies]


def test_limits_as_postfix_and_fail2ban(make_instance):
    """The same sessions against the installed Postfix: the same replies,
    the same warning and reject lines (but for client names and queue
    ids), and fail2ban's stock postfix filter counts as many lines, for
    the same client, in both logs (syslog_name = postfix)."""
    pf = started_postfix(ORACLE_MAIN)
    try:
        pf_replies = limited_sessions(pf.port)
        wait_until(lambda: "Connection rate limit exceeded" in pf.log.read_text(), 30,
                   what="Postfix's smtpd to log the rate limit")
        time.sleep(1)
        pf_texts = smtpd_texts(pf.log.read_text(), r"postfix/smtpd")
        pf_f2b = fail2ban(pf.log, FILTER)
    finally:
        print(pf.log_tail())
        pf.cleanup()
    inst = make_instance(start=False, extra_main=["syslog_name = postfix"])
    inst.write_master_cf(master_cf(inst.port) + "anvil unix - - n - 1 anvil\n")
    inst.append_main_cf(*ORACLE_MAIN)
    inst.start()
    ours = limited_sessions(inst.port)
    inst.wait_log(r"^warning: Connection rate limit exceeded", program="smtpd")
    inst.wait_log(r"^disconnect from \S+\[127\.0\.0\.2\]", program="smtpd", count=2)
    texts = smtpd_texts(inst.log.read_text(), r"postfix/smtpd")
    assert ours == pf_replies

    def interesting(lines):
        out = []
        for t in lines:
            if re.match(r"(warning: .*limit exceeded|\w+: reject: |improper command pipe)", t):
                t = re.sub(r"^\w+: reject: ", "ID: reject: ", t)
                t = re.sub(r"\S+\[(127\.0\.0\.\d)\]", r"CLIENT[\1]", t)
                out.append(re.sub(r"for service \S+", "for service S", t))
        return out
    assert interesting(texts) == interesting(pf_texts)
    assert len(interesting(texts)) == 6, texts
    matched, _, ips = fail2ban(inst.log, FILTER)
    assert (matched, sorted(ips)) == (pf_f2b[0], sorted(pf_f2b[2])), texts
    assert matched >= 2 and set(ips) == {"127.0.0.2"}, texts
