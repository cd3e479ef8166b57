"""SMTP smuggling: a message whose body holds a non-standard end of data
(bare LF or CR around the dot, with and without NUL bytes) followed by a
second, smuggled MAIL/RCPT/DATA, all in one write. Whatever
smtpd_forbid_bare_newline says, the only end of data is CR LF . CR LF, so
at most the one real message is queued and the smuggled recipient never
gets anything: "yes" (the default) refuses the message with 521 and
closes, "normalize" and "no" keep the smuggled text as content."""

import pytest

from postern_instance import HELO, SENDER, RawSMTP, wait_until

VARIANTS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\r.\r",
    b"\r\n\x00.\r\n",
    b"\r\n.\x00\r\n",
    b"\n\x00.\n",
    b"\r\n.\x00\n",
]


def smuggle(inst, n, variant):
    """One session trying variant; returns the replies after DATA's 354."""
    real, victim = f"real{n}@localhost", f"victim{n}@localhost"
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd(f"RCPT TO:<{real}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(b"From: <" + SENDER.encode() + b">\r\nSubject: real " + str(n).encode() +
               b"\r\n\r\nreal body" + variant +
               b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<" + victim.encode() +
               b">\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n")
        replies = []
        try:
            while True:
                replies.append(c.read_reply())
                if replies[-1][0] in (221, 421, 521):
                    break
        except ConnectionError:
            pass
    return replies


@pytest.mark.parametrize("mode", ["yes", "normalize", "no"])
def test_smuggling_variants_queue_at_most_the_real_message(make_instance, mode):
    inst = make_instance(extra_main=[f"smtpd_forbid_bare_newline = {mode}"])
    outcomes = {}
    for n, variant in enumerate(VARIANTS):
        replies = smuggle(inst, n, variant)
        queued = [r for r in replies if r[0] == 250 and r[1][0].startswith("2.0.0 Ok: queued")]
        assert len(queued) <= 1, (variant, replies)
        # The smuggled commands are never answered as commands.
        assert not any(r[0] == 354 for r in replies), (variant, replies)
        outcomes[n] = (replies, len(queued))
        if mode == "yes" and b"\x00" not in variant:
            assert replies[0][0] == 521, (variant, replies)
            assert replies[0][1][0] in ("5.5.2 mx.test.example Error: bare <LF> received",
                                        "5.5.2 mx.test.example Error: bare <CR> received")
        if b"\x00" in variant and (mode != "yes" or b"\r\n" in variant):
            assert (550, ["5.6.0 Error: NUL character in message content"]) in replies \
                or replies[0][0] == 521, (variant, replies)

    expected = sum(q for _, q in outcomes.values())
    wait_until(lambda: sum(len(inst.delivered(f"real{n}")) for n in outcomes) >= expected, 30,
               what=f"{expected} real deliveries")
    inst.wait_queue_empty(30)
    for n, variant in enumerate(VARIANTS):
        assert inst.delivered(f"victim{n}") == [], variant
        real = inst.delivered(f"real{n}")
        assert len(real) == outcomes[n][1] <= 1, (variant, real)
        if real:
            # The would-be second message is plain content of the first.
            data = real[0].read_bytes()
            assert b"MAIL FROM:<evil@example.org>" in data, data
    assert not inst.find_log(r"from=<evil@example\.org>, size=")
    if mode == "yes":
        assert inst.find_log(r"^\w+: reject: DATA from unknown\[127\.0\.0\.1\]: 521 5\.5\.2 "
                             r"mx\.test\.example Error: bare <(LF|CR)> received; "
                             rf"from=<{SENDER}> to=<real\d+@localhost> proto=ESMTP helo=<{HELO}>$",
                             program="smtpd")
    else:
        # Without NUL bytes the one real message gets through.
        assert all(outcomes[n][1] == 1 for n, v in enumerate(VARIANTS) if b"\x00" not in v)
