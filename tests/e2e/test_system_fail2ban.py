"""fail2ban's stock postfix filters, unchanged, read Postern's maillog
(syslog_name = postfix, since the filters hard-code the name): the
`postfix` jail's filter (filter.d/postfix.conf, mode "more") matches every
reject line and "too many errors" line smtpd wrote, the `postfix-sasl`
jail's (postfix[mode=auth]) every failed AUTH, and mode "ddos" every
session that ended with failed AUTH only, each with the client's address.

The rejects come from smtpd restrictions (a client access table, a
non-FQDN HELO, relaying from outside mynetworks), unknown hosted users and
the hard error limit. The same sessions against the installed Postfix
with the same restrictions give the same log lines, word for word, but
for the client's name (Postfix looks it up) and the queue ids.
"""

import re
import shutil
import subprocess

import pytest

from postern_instance import RawSMTP, wait_until
from postfix_reference import started_postfix
from smtpd_fixture import plain_response, sasl_lines

FAIL2BAN_REGEX = shutil.which("fail2ban-regex") or "/usr/bin/fail2ban-regex"
FILTER = "/etc/fail2ban/filter.d/postfix.conf"
USERS = {"alice": "right-pass"}
# Restrictions both MTAs are given.
RESTRICTIONS = [
    "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
    "reject_unauth_destination",
    "smtpd_client_restrictions = check_client_access inline:{ 127.0.0.3=REJECT }",
    "smtpd_helo_restrictions = reject_non_fqdn_helo_hostname",
    "virtual_mailbox_domains = hosted.example",
    "virtual_mailbox_maps = inline:{ alice@hosted.example=alice/ }",
    "smtpd_error_sleep_time = 0",
    "smtpd_hard_error_limit = 3",
]


def reject_sessions(port):
    """The rejected sessions; returns the number of reject replies."""
    rejects = 0

    def session(source, helo, rcpts, sender="x@outside.example"):
        nonlocal rejects
        with RawSMTP(port, source=(source, 0), timeout=15) as c:
            assert c.read_reply()[0] == 220
            assert c.cmd(f"EHLO {helo}")[0] == 250
            assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
            for r in rcpts:
                code, texts = c.cmd(f"RCPT TO:<{r}>")
                assert code in (504, 550, 554), (code, texts)
                rejects += 1
            c.cmd("QUIT")

    session("127.0.0.2", "outside.example", ["victim@remote.example"])       # relay
    session("127.0.0.1", "client.example", ["nobody@hosted.example"])        # unknown user
    session("127.0.0.1", "nodots", ["alice@hosted.example"])                 # HELO
    session("127.0.0.3", "client.example", ["alice@hosted.example"])         # client access
    # The hard error limit: the third error ends the session.
    with RawSMTP(port, source=("127.0.0.2", 0), timeout=15) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd("EHLO outside.example")[0] == 250
        assert c.cmd("MAIL FROM:<x@outside.example>")[0] == 250
        for i in range(3):
            code, _ = c.cmd(f"RCPT TO:<v{i}@remote.example>")
            assert code == 554
            rejects += 1
        assert c.read_reply()[0] == 421
    return rejects


def auth_failures(port):
    """Failed AUTH PLAIN and LOGIN attempts; returns how many."""
    with RawSMTP(port, timeout=15) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd("EHLO client.example")[0] == 250
        assert c.cmd("AUTH PLAIN " + plain_response("alice", "wrong"))[0] == 535
        assert c.cmd("AUTH LOGIN")[0] == 334
        assert c.cmd("YWxpY2U=")[0] == 334              # alice
        assert c.cmd("d3JvbmcgYWdhaW4=")[0] == 535      # wrong again
        c.cmd("QUIT")
    with RawSMTP(port, source=("127.0.0.2", 0), timeout=15) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd("EHLO outside.example")[0] == 250
        assert c.cmd("AUTH PLAIN " + plain_response("mallory", "guess"))[0] == 535
        c.cmd("QUIT")
    return 3


def fail2ban(log, filt):
    """(matched, missed, the address of each match) of fail2ban-regex over
    log with filter filt."""
    p = subprocess.run([FAIL2BAN_REGEX, "--out=ip", str(log), filt], capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    ips = p.stdout.split()
    q = subprocess.run([FAIL2BAN_REGEX, str(log), filt], capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    m = re.search(r"^Lines: \d+ lines, \d+ ignored, (\d+) matched, (\d+) missed", q.stdout, re.M)
    assert m, q.stdout
    return int(m[1]), int(m[2]), ips


def smtpd_texts(log_text, program_re):
    """The text of each smtpd line of a maillog."""
    out = []
    for line in log_text.splitlines():
        m = re.match(rf"^\w{{3}} [ \d]\d \d\d:\d\d:\d\d \S+ {program_re}\[\d+\]: (.*)$", line)
        if m:
            out.append(m[1])
    return out


def test_fail2ban_counts_every_reject_and_auth_failure(make_instance):
    inst = make_instance(extra_main=["syslog_name = postfix", "smtpd_tls_auth_only = no",
                                     *RESTRICTIONS, *sasl_lines(USERS)])
    rejects = reject_sessions(inst.port)
    failures = auth_failures(inst.port)
    inst.wait_log(r"^disconnect from unknown\[127\.0\.0\.2\]", program="smtpd", count=3)
    texts = smtpd_texts(inst.log.read_text(), r"postfix/smtpd")
    reject_lines = [t for t in texts if re.match(r"^NOQUEUE: reject: ", t)]
    error_lines = [t for t in texts if t.startswith("too many errors after ")]
    auth_lines = [t for t in texts if " authentication failed: " in t]
    assert len(reject_lines) == rejects == 7, texts
    assert len(error_lines) == 1 and len(auth_lines) == failures, texts

    matched, _, ips = fail2ban(inst.log, FILTER)
    assert matched == len(reject_lines) + len(error_lines), texts
    assert sorted(ips) == ["127.0.0.1"] * 2 + ["127.0.0.2"] * 5 + ["127.0.0.3"], texts

    matched, _, ips = fail2ban(inst.log, f"{FILTER}[mode=auth]")
    assert matched == failures, texts
    assert sorted(ips) == ["127.0.0.1", "127.0.0.1", "127.0.0.2"], texts

    # The "ddos" part of the aggressive mode: sessions that ended with
    # failed AUTH and no success ("disconnect from ... auth=0/N"), and
    # connections lost before DATA (the test's own port probe at start logs
    # "lost connection after CONNECT", as Postfix does for it).
    matched, _, ips = fail2ban(inst.log, f"{FILTER}[mode=ddos]")
    assert [t for t in texts if re.search(r" auth=0/\d+ ", t)] == [
        "disconnect from unknown[127.0.0.1] ehlo=1 auth=0/2 quit=1 commands=2/4",
        "disconnect from unknown[127.0.0.2] ehlo=1 auth=0/1 quit=1 commands=2/3"]
    lost = [re.search(r"\[(127\.0\.0\.\d)\]", t)[1] for t in texts
            if re.match(r"lost connection after (?!DATA)[A-Z]+ from ", t)]
    assert lost, texts
    assert (matched, sorted(ips)) == (2 + len(lost), sorted(["127.0.0.1", "127.0.0.2"] + lost)), \
        texts


def normalized(text):
    """A log text without what differs between the MTAs by design: the
    client's name (Postfix looks it up) and queue ids."""
    text = re.sub(r"\S+\[(127\.0\.0\.\d)\]", r"CLIENT[\1]", text)
    return re.sub(r"^[0-9A-Za-z]{10,}: ", "ID: ", text)


def test_reject_lines_are_postfix_words(make_instance):
    """The same sessions against the installed Postfix, with the same
    restrictions, log the same reject and error lines."""
    pf = started_postfix(["mynetworks = 127.0.0.1/32", *RESTRICTIONS])
    try:
        reject_sessions(pf.port)
        pf_texts = []

        def postfix_done():
            pf_texts[:] = smtpd_texts(pf.log.read_text(), r"postfix/smtpd")
            # The last session ends with the hard error limit; the start-up
            # port probe is a session too, so count that line, not sessions.
            return any(t.startswith("too many errors after ") for t in pf_texts) and \
                len([t for t in pf_texts if t.startswith("disconnect from ")]) >= 5
        wait_until(postfix_done, 30, what="Postfix's smtpd to log the sessions")
    finally:
        print(pf.log_tail())
        pf.cleanup()
    inst = make_instance(extra_main=["syslog_name = postfix", *RESTRICTIONS])
    reject_sessions(inst.port)
    inst.wait_log(r"^too many errors after ", program="smtpd")
    inst.wait_log(r"^disconnect from ", program="smtpd", count=5)
    ours = smtpd_texts(inst.log.read_text(), r"postfix/smtpd")

    def interesting(texts):
        return [normalized(t) for t in texts
                if t.startswith(("NOQUEUE: reject: ", "too many errors after "))]
    assert interesting(ours) == interesting(pf_texts)
