"""Headers and body always separated (issue 15): a message whose header
block ends at a line that is no header (`echo hi | sendmail alice`, a
DATA without the empty line) is delivered with the empty line between the
last header (cleanup's added ones included) and the body, as Postfix
writes it, whatever the origin; a message without body gets none. The
delivered files are read with Python's email parser, as a mail reader
would: no defects, headers and body intact."""

import email
import email.policy

import pytest

from postern_instance import RawSMTP, crlf
from sendmail_helpers import run_sendmail

# (content as submitted, headers it keeps, body as delivered)
CASES = [
    ("hi\n", {}, "hi\n"),
    ("Subject: one\nhi there: not a header\nsecond line\n", {"Subject": "one"},
     "hi there: not a header\nsecond line\n"),
    ("Subject: folded\n\tmore\n>From the body\n", {"Subject": "folded\n\tmore"},
     ">From the body\n"),
    ("Subject: already\n\nseparated\n", {"Subject": "already"}, "separated\n"),
]


def parsed(data):
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    return msg, [type(d).__name__ for d in msg.defects]


def check_delivered(data, headers, body):
    msg, defects = parsed(data)
    assert defects == [], (defects, data)
    for name, value in headers.items():
        assert msg[name] == value, (name, data)
    for added in ("Message-ID", "Date", "From"):
        assert msg[added], (added, data)
    assert msg.get_payload() == body, data
    head, sep, rest = data.partition(b"\n\n")
    assert sep and rest == body.encode(), data
    assert b"\n\n" not in head


@pytest.mark.parametrize("content,headers,body", CASES)
def test_sendmail_body_is_separated(instance, content, headers, body):
    r = run_sendmail(instance, ["alice"], content)
    assert (r.returncode, r.stderr) == (0, b"")
    [delivered] = instance.wait_delivered("alice", 1)
    check_delivered(delivered.read_bytes(), headers, body)


@pytest.mark.parametrize("content,headers,body", CASES)
def test_smtp_body_is_separated(instance, content, headers, body):
    with RawSMTP(instance.port) as c:
        assert c.read_reply()[0] == 220
        for line in ("EHLO client.example", "MAIL FROM:<sender@example.org>",
                     "RCPT TO:<alice@localhost>"):
            assert c.cmd(line)[0] == 250, line
        assert c.cmd("DATA")[0] == 354
        c.send(crlf(content) + b".\r\n")
        assert c.read_reply()[0] == 250
        assert c.cmd("QUIT")[0] == 221
    [delivered] = instance.wait_delivered("alice", 1)
    check_delivered(delivered.read_bytes(), headers, body)


def test_headers_only_get_no_empty_body(instance):
    """Postfix adds no separator when nothing follows the headers."""
    r = run_sendmail(instance, ["alice"], "Subject: nothing else\n")
    assert (r.returncode, r.stderr) == (0, b"")
    [delivered] = instance.wait_delivered("alice", 1)
    data = delivered.read_bytes()
    msg, defects = parsed(data)
    assert defects == [] and msg["Subject"] == "nothing else", data
    assert data.endswith(b"\n") and b"\n\n" not in data, data
