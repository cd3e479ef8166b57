"""smtpd against hostile clients: 2,000 RCPTs (smtpd_recipient_limit),
RCPTs beyond smtpd_recipient_overshoot_limit, a 100 KB command line
(line_length_limit), 60 connections from one address
(smtpd_client_connection_count_limit), clients sending 1 byte per second
(smtpd_timeout as a per-request deadline, smtpd_min_data_rate in DATA),
the hard and soft error limits and the junk command limit. Throughout,
another client is served at once."""

import socket
import threading
import time

from postern_instance import (DEFAULT_SERVICES, HELO, SENDER, RawSMTP, crlf, simple_message,
                              send_in_session)

OUTSIDE = ("127.0.0.2", 0)


def session(inst, source=None):
    c = RawSMTP(inst.port, source=source)
    assert c.read_reply()[0] == 220
    assert c.cmd(f"EHLO {HELO}")[0] == 250
    return c


def served_at_once(inst, source=("127.0.0.3", 0)):
    """Another client gets through a whole transaction in well under a
    second."""
    t = time.monotonic()
    with inst.smtp(source=source) as s:
        assert s.ehlo(HELO)[0] == 250
        send_in_session(s, simple_message(subject="bystander"), ["bystander@localhost"])
    took = time.monotonic() - t
    assert took < 1.5, took


def closed(c, wait=5.0):
    """True when the server has closed c (EOF within wait seconds)."""
    c.sock.settimeout(wait)
    try:
        while True:
            data = c.sock.recv(4096)
            if not data:
                return True
            c.buf += data
    except socket.timeout:
        return False
    except OSError:
        return True


def test_2000_recipients(instance):
    with session(instance) as c:
        batch = [f"MAIL FROM:<{SENDER}>"] + ["RCPT TO:<alice@localhost>"] * 2000 + ["NOOP"]
        c.send("".join(b + "\r\n" for b in batch).encode())
        replies = [c.read_reply() for _ in batch]
        assert replies[0] == (250, ["2.1.0 Ok"])
        assert replies[1:1001] == [(250, ["2.1.5 Ok"])] * 1000
        assert replies[1001:2001] == [(452, ["4.5.3 Error: too many recipients"])] * 1000
        assert replies[2001] == (250, ["2.0.0 Ok"])   # not counted as errors: still served
        served_at_once(instance)
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("QUIT")[0] == 221
    time.sleep(0.3)
    assert instance.queue_files() == []


def test_recipient_overshoot_limit(make_instance):
    """Postfix's smtpd_recipient_overshoot_limit, as the installed Postfix
    behaves: past smtpd_recipient_limit each RCPT gets 452, the first
    overshoot_limit of them per transaction are no errors (and count as
    accepted in the disconnect line), each one beyond is an error; the
    error limits then end the session."""
    inst = make_instance(extra_main=["smtpd_recipient_limit = 2",
                                     "smtpd_recipient_overshoot_limit = 3",
                                     "smtpd_hard_error_limit = 4",
                                     "smtpd_soft_error_limit = 100",
                                     "smtpd_error_sleep_time = 0"])
    too_many = (452, ["4.5.3 Error: too many recipients"])
    with session(inst, source=("127.0.0.4", 0)) as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        replies = [c.cmd("RCPT TO:<alice@localhost>") for _ in range(9)]
        assert replies == [(250, ["2.1.5 Ok"])] * 2 + [too_many] * 7
        # The 4th refusal beyond the overshoot is the 4th error.
        assert c.read_reply() == (421, ["4.7.0 mx.test.example Error: too many errors"])
        assert closed(c)
    inst.wait_log(r"^too many errors after RCPT from unknown\[127\.0\.0\.4\]$", program="smtpd")
    inst.wait_log(r"^disconnect from unknown\[127\.0\.0\.4\] ehlo=1 mail=1 rcpt=5/9 "
                  r"commands=7/11$", program="smtpd")
    # The overshoot is counted per transaction.
    with session(inst, source=("127.0.0.5", 0)) as c:
        for _ in range(3):
            assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
            replies = [c.cmd("RCPT TO:<alice@localhost>") for _ in range(5)]
            assert replies == [(250, ["2.1.5 Ok"])] * 2 + [too_many] * 3
            assert c.cmd("RSET")[0] == 250
        assert c.cmd("QUIT")[0] == 221
    inst.wait_log(r"^disconnect from unknown\[127\.0\.0\.5\] ehlo=1 mail=3 rcpt=15 rset=3 "
                  r"quit=1 commands=23$", program="smtpd")


def test_100kb_command_line(instance):
    with session(instance) as c:
        c.send(b"MAIL FROM:<" + b"a" * 100_000 + b"@example.org>\r\n")
        assert c.read_reply() == (500, ["5.5.2 Error: command line too long"])
        assert c.cmd("NOOP") == (250, ["2.0.0 Ok"])     # one reply for the whole line
        served_at_once(instance)
        assert c.cmd(f"MAIL FROM:<{SENDER}>") == (250, ["2.1.0 Ok"])
        assert c.cmd("MAIL FROM:<x\0y@example.org>") == (
            500, ["5.5.2 Error: NUL character in command"])


def test_60_connections_from_one_address(make_instance):
    """smtpd_client_connection_count_limit (50): anvil, as in the shipped
    master.cf, counts the client's sessions across the smtpd processes."""
    instance = make_instance(start=False)
    instance.write_master_cf(f"127.0.0.1:{instance.port} inet n - n - - smtpd\n"
                             + DEFAULT_SERVICES + "anvil unix - - n - 1 anvil\n")
    instance.start()
    conns, refused = [], []
    try:
        for _ in range(60):
            c = RawSMTP(instance.port, source=OUTSIDE)
            code, texts = c.read_reply()
            (conns if code == 220 else refused).append((c, code, texts))
        assert len(conns) == 50, len(conns)
        assert [(code, texts) for _, code, texts in refused] == [
            (421, ["4.7.0 mx.test.example Error: too many connections from 127.0.0.2"])] * 10
        assert all(closed(c) for c, _, _ in refused)
        served_at_once(instance)
        # The 50 are still fine, and a slot freed is a slot reusable.
        assert conns[0][0].cmd(f"EHLO {HELO}")[0] == 250
        conns.pop()[0].close()
        time.sleep(0.3)
        with RawSMTP(instance.port, source=OUTSIDE) as c:
            assert c.read_reply()[0] == 220
    finally:
        for c, _, _ in conns + refused:
            c.close()
    instance.wait_log(r"^warning: Connection concurrency limit exceeded: 51 from "
                      r"unknown\[127\.0\.0\.2\] for service ", program="smtpd")


def smtpd_rss_mib(inst):
    total = 0
    for pid in inst.pids("smtpd"):
        with open(f"/proc/{pid}/status") as f:
            total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return total / 1024


def test_client_that_never_reads_its_replies(instance):
    """Pipelined commands from a client that reads nothing: smtpd stops
    reading once its unsent replies pile up, so memory stays bounded."""
    with session(instance) as c:
        c.send(f"MAIL FROM:<{SENDER}>\r\n".encode())
        chunk = b"RCPT TO:<alice@localhost>\r\n" * 40_000      # about 1 MB
        c.sock.settimeout(3.0)
        sent, blocked = 0, False
        try:
            while sent < 64 * len(chunk):
                c.sock.sendall(chunk)
                sent += len(chunk)
        except socket.timeout:
            blocked = True
        assert blocked, f"smtpd took {sent} bytes without their replies being read"
        assert smtpd_rss_mib(instance) < 64
        served_at_once(instance)


def drip(sock, data, interval, stop):
    for i in range(len(data)):
        if stop.is_set():
            return
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return
        time.sleep(interval)


def test_one_byte_per_second_clients(make_instance):
    inst = make_instance(extra_main=["smtpd_timeout = 3s"])
    stop = threading.Event()
    cmd_client = session(inst)
    data_client = session(inst)
    threads = []
    try:
        assert data_client.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert data_client.cmd("RCPT TO:<slow@localhost>")[0] == 250
        assert data_client.cmd("DATA")[0] == 354
        t0 = time.monotonic()
        for c, data in ((cmd_client, b"EHLO a-slow-client.example\r\n"),
                        (data_client, crlf(simple_message(body="x" * 200 + "\n")))):
            th = threading.Thread(target=drip, args=(c.sock, data, 1.0, stop), daemon=True)
            th.start()
            threads.append(th)
        time.sleep(1.0)
        served_at_once(inst)
        for c in (cmd_client, data_client):
            assert c.read_reply() == (421, ["4.4.2 mx.test.example Error: timeout exceeded"])
            took = time.monotonic() - t0
            assert 2.0 <= took <= 8.0, took
            assert closed(c)
    finally:
        stop.set()
        for c in (cmd_client, data_client):
            c.close()
        for th in threads:
            th.join(5)
    inst.wait_log(r"^timeout after EHLO from unknown\[127\.0\.0\.1\]$", program="smtpd")
    inst.wait_log(r"^timeout after DATA \(\d+ bytes\) from unknown\[127\.0\.0\.1\]$",
                  program="smtpd")
    assert inst.delivered("slow") == []
    inst.wait_queue_empty(10)


def test_error_limits(make_instance):
    inst = make_instance(extra_main=["smtpd_hard_error_limit = 5", "smtpd_soft_error_limit = 2",
                                     "smtpd_error_sleep_time = 1s",
                                     "smtpd_junk_command_limit = 3"])
    with session(inst) as c:
        t = time.monotonic()
        for _ in range(4):
            assert c.cmd("BOGUS") == (500, ["5.5.2 Error: command not recognized"])
        # Past the soft limit every error costs a second.
        assert time.monotonic() - t >= 1.9
        assert c.cmd("BOGUS") == (500, ["5.5.2 Error: command not recognized"])
        assert c.read_reply() == (421, ["4.7.0 mx.test.example Error: too many errors"])
        assert closed(c)
    inst.wait_log(r"^too many errors after UNKNOWN from unknown\[127\.0\.0\.1\]$",
                  program="smtpd")
    # Junk: the first 3 NOOPs are free, each further one is an error.
    with session(inst) as c:
        c.send(b"NOOP\r\n" * 8)
        assert [c.read_reply() for _ in range(8)] == [(250, ["2.0.0 Ok"])] * 8
        assert c.read_reply() == (421, ["4.7.0 mx.test.example Error: too many errors"])
        assert closed(c)
