"""One message through the whole chain: smtpd -> cleanup -> qmgr -> local ->
Maildir. Checks the delivered bytes exactly, the Postfix-format log lines
for the queue id in order, and the headers cleanup adds when they are missing.
"""

import datetime
import email.utils
import re

from postern_instance import HELO, HOSTNAME, SENDER, split_message, header_name


def assert_recent_date(text):
    when = email.utils.parsedate_to_datetime(text)
    assert when is not None and when.tzinfo is not None, text
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 600, f"date {text!r} is not now"


def strip_trace_headers(data, sender, rcpt, qid, client_ip="127.0.0.1", helo=HELO):
    """Check the Return-Path, X-Original-To, Delivered-To and Received
    headers local and smtpd prepend, and return what follows them."""
    prefix = f"Return-Path: <{sender}>\nX-Original-To: {rcpt}\nDelivered-To: {rcpt}\n".encode()
    assert data.startswith(prefix), data[:300]
    rest = data[len(prefix):]
    received = re.compile(
        rb"Received: from " + re.escape(helo.encode()) + rb" \(unknown \["
        + re.escape(client_ip.encode()) + rb"\]\)\n"
        rb"\tby " + re.escape(HOSTNAME.encode()) + rb" \(Postern\) with ESMTP id (?P<id>[0-9A-Za-z]+)\n"
        rb"\tfor <" + re.escape(rcpt.encode()) + rb">; (?P<date>[^\n]+)\n")
    m = received.match(rest)
    assert m, f"Received header not as expected:\n{rest[:400].decode(errors='replace')}"
    assert m["id"].decode() == qid
    assert_recent_date(m["date"].decode())
    return rest[m.end():]


EXACT_LINES = [
    "From: Sender <sender@example.org>",
    "To: Alice <alice@localhost>",
    "Subject: exact bytes",
    "Date: Mon, 01 Jan 2024 00:00:00 +0000",
    "Message-ID: <exact-1@client.example>",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: 8bit",
    "X-Folded: first part",
    "\tsecond part",
    "",
    "First line.",
    ".leading dot",
    "..two leading dots",
    ".",
    " leading space and trailing space ",
    "\ttab",
    "caf\u00e9 \u2014 8-bit text",
    "x" * 900,
    "",
    "",
    "last line",
]


def test_exact_bytes_and_log_sequence(instance):
    rcpt = "alice@localhost"
    msg = "\n".join(EXACT_LINES) + "\n"
    qid = instance.send(msg.encode("utf-8"), [rcpt], mail_options=["BODY=8BITMIME"])

    files = instance.wait_delivered("alice", 1)
    assert len(files) == 1
    data = files[0].read_bytes()
    body = strip_trace_headers(data, SENDER, rcpt, qid)
    # Exactly as sent: CRLF -> LF, dot-stuffing undone, nothing added.
    assert body == msg.encode("utf-8")

    # Maildir layout.
    for sub in ("tmp", "cur", "new"):
        assert (instance.mail / "alice" / sub).is_dir()

    removed = instance.wait_log(rf"^{qid}: removed$", program="qmgr")
    assert len(removed) == 1
    instance.wait_queue_empty(10)

    lines = [l for l in instance.log_lines() if l.text.startswith(qid + ": ")]
    expected = [
        ("smtpd", rf"^{qid}: client=unknown\[127\.0\.0\.1\]$"),
        ("cleanup", rf"^{qid}: message-id=<exact-1@client\.example>$"),
        ("qmgr", rf"^{qid}: from=<{re.escape(SENDER)}>, size=(?P<size>\d+), nrcpt=1 \(queue active\)$"),
        ("local", rf"^{qid}: to=<alice@localhost>, relay=local, delay=\d+(\.\d+)?, "
                  r"delays=\d+(\.\d+)?/\d+(\.\d+)?/\d+(\.\d+)?/\d+(\.\d+)?, dsn=2\.0\.0, "
                  r"status=sent \(delivered to maildir\)$"),
        ("qmgr", rf"^{qid}: removed$"),
    ]
    positions = []
    for program, pattern in expected:
        found = [l for l in lines if re.match(pattern, l.text)]
        assert len(found) == 1, f"want one /{pattern}/, got {found}; all for {qid}: {lines}"
        assert found[0].program == "postern/" + program, found[0]
        positions.append(found[0].index)
        if program == "qmgr" and "size=" in pattern:
            size = int(re.match(pattern, found[0].text)["size"])
            assert size >= len(msg.encode("utf-8")), (size, len(msg))
    assert positions == sorted(positions), f"log lines out of order: {lines}"

    # The session around it.
    client_line = next(l for l in instance.log_lines() if l.index == positions[0])
    smtpd = [l for l in instance.log_lines() if l.pid == client_line.pid]
    assert any(l.text == "connect from unknown[127.0.0.1]" and l.index < client_line.index
               for l in smtpd), smtpd
    assert any(l.text.startswith("disconnect from unknown[127.0.0.1]")
               and l.index > client_line.index for l in smtpd), smtpd


def test_missing_headers_are_added(instance):
    rcpt = "alice@localhost"
    msg = "Subject: no ids\nTo: alice@localhost\n\nbody line\n"
    qid = instance.send(msg, [rcpt])
    data = instance.wait_delivered("alice", 1)[0].read_bytes()
    rest = strip_trace_headers(data, SENDER, rcpt, qid)
    headers, body = split_message(rest)
    assert body == b"body line\n"
    assert headers[:2] == [b"Subject: no ids", b"To: alice@localhost"], headers
    added = headers[2:]
    assert sorted(header_name(h) for h in added) == ["date", "from", "message-id"], headers
    values = {header_name(h): h.split(b":", 1)[1].strip().decode() for h in added}
    assert re.fullmatch(r"<[^<>@\s]+@" + re.escape(HOSTNAME) + ">", values["message-id"]), values
    assert_recent_date(values["date"])
    assert values["from"] == SENDER
    # cleanup logs the message-id it made up.
    instance.wait_log(rf"^{qid}: message-id={re.escape(values['message-id'])}$", program="cleanup",
                      timeout=5)


def test_only_missing_date_is_added(instance):
    msg = ("From: Someone <someone@example.org>\nMessage-ID: <has-id@client.example>\n"
           "Subject: date only\n\nbody\n")
    qid = instance.send(msg, ["alice@localhost"])
    data = instance.wait_delivered("alice", 1)[0].read_bytes()
    headers, body = split_message(strip_trace_headers(data, SENDER, "alice@localhost", qid))
    assert headers[:3] == [b"From: Someone <someone@example.org>",
                           b"Message-ID: <has-id@client.example>", b"Subject: date only"]
    assert len(headers) == 4 and header_name(headers[3]) == "date", headers
    assert_recent_date(headers[3].split(b":", 1)[1].strip().decode())
    assert body == b"body\n"


def test_null_sender(instance):
    """Bounces arrive with MAIL FROM:<>; Return-Path must say <>."""
    msg = "From: MAILER-DAEMON@example.org\nSubject: bounce\n\nbody\n"
    qid = instance.send(msg, ["alice@localhost"], sender="")
    data = instance.wait_delivered("alice", 1)[0].read_bytes()
    strip_trace_headers(data, "", "alice@localhost", qid)
    instance.wait_log(rf"^{qid}: from=<>, size=\d+, nrcpt=1 \(queue active\)$", program="qmgr",
                      timeout=5)
