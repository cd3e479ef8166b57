"""smtpd restrictions: the relay matrix (routing hidden in the local part
never relays, from a client outside mynetworks without AUTH: nothing
queued, NOQUEUE reject lines), access tables for client, sender and
recipient, reject_non_fqdn_*, and the DNS-based reject_rbl_client and
reject_unknown_sender_domain against a dnsmasq on 127.0.0.1 (answers
waited for without blocking: pipelined RCPTs come back in order)."""

import time

import pytest

from dnsmasq_fixture import DnsServer
from postern_instance import HELO, SENDER, RawSMTP

OUTSIDE = ("127.0.0.2", 0)

# (RCPT argument, the address quoted in the reply)
RELAY_TRICKS = [
    ("<u%ext.example@localhost>", "u%ext.example@localhost"),
    ('<"u@ext.example"@localhost>', '"u@ext.example"@localhost'),
    ("<@localhost:u@ext.example>", "u@ext.example"),
    ("<ext.example!u@localhost>", "ext.example!u@localhost"),
    ("<u%ext.example>", "u%ext.example"),
    ("<ext.example!u>", "ext.example!u"),
    ("<bob@example.com>", "bob@example.com"),
    ("<bob@[192.0.2.1]>", "bob@[192.0.2.1]"),
    ("<bob@example.com.>", "bob@example.com."),
]


def session(inst, source=None, helo=HELO):
    c = RawSMTP(inst.port, source=source)
    assert c.read_reply()[0] == 220
    assert c.cmd(f"EHLO {helo}")[0] == 250
    return c


def test_relay_tricks_never_relay_from_outside(instance):
    with session(instance, OUTSIDE) as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        for arg, shown in RELAY_TRICKS:
            assert c.cmd(f"RCPT TO:{arg}") == (
                554, [f"5.7.1 <{shown}>: Relay access denied"]), arg
        # An unquoted second '@' is not an address at all.
        assert c.cmd("RCPT TO:<u@ext.example@localhost>") == (
            501, ["5.1.3 Bad recipient address syntax"])
        assert c.cmd("DATA") == (554, ["5.5.1 Error: no valid recipients"])
        assert c.cmd("QUIT")[0] == 221
    time.sleep(0.3)
    assert instance.queue_files() == []
    rejects = instance.find_log(r"^NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: 554 5\.7\.1 ",
                                program="smtpd")
    assert len(rejects) == len(RELAY_TRICKS), rejects
    assert rejects[0].text == (
        "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 <u%ext.example@localhost>: "
        f"Relay access denied; from=<{SENDER}> to=<u%ext.example@localhost> proto=ESMTP "
        f"helo=<{HELO}>")
    # The same addresses from inside mynetworks are accepted: the refusals
    # above are the relay policy, not the parser.
    with session(instance) as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        for arg, _ in RELAY_TRICKS:
            assert c.cmd(f"RCPT TO:{arg}")[0] == 250, arg
        assert c.cmd("RSET")[0] == 250


def test_relay_domains_and_defer_unauth_destination(make_instance):
    inst = make_instance(extra_main=[
        "relay_domains = relay.example",
        "smtpd_relay_restrictions = permit_mynetworks, defer_unauth_destination"])
    with session(inst, OUTSIDE) as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<carol@relay.example>") == (250, ["2.1.5 Ok"])
        assert c.cmd("RCPT TO:<carol%x@relay.example>") == (
            450, ["4.7.1 <carol%x@relay.example>: Relay access denied"])
        assert c.cmd("RCPT TO:<bob@example.com>") == (
            450, ["4.7.1 <bob@example.com>: Relay access denied"])


def test_access_tables_and_fqdn_checks(make_instance):
    inst = make_instance(extra_main=[
        "smtpd_client_restrictions = check_client_access "
        "inline:{127.0.0.3=REJECT, {127.0.0.4=DEFER go away}, 127.0.0.5=OK}",
        "smtpd_sender_restrictions = reject_non_fqdn_sender, check_sender_access "
        "inline:{spammer@example.net=REJECT, example.biz=REJECT, <>=REJECT}",
        "smtpd_recipient_restrictions = reject_non_fqdn_recipient, check_recipient_access "
        "inline:{blocked@mx.test.example=REJECT, {closed@mx.test.example=550 5.1.1 Mailbox closed}, "
        "gone@mx.test.example=550}, permit_mynetworks, "
        "reject_unauth_destination"])
    with session(inst, ("127.0.0.3", 0)) as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>") == (
            554, ["5.7.1 <unknown[127.0.0.3]>: Client host rejected: Access denied"])
    with session(inst, ("127.0.0.4", 0)) as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>") == (
            450, ["4.7.1 <unknown[127.0.0.4]>: Client host rejected: go away"])
    with session(inst) as c:
        for sender, reply in [
            ("spammer@example.net", "<spammer@example.net>: Sender address rejected: Access denied"),
            ("anyone@example.biz", "<anyone@example.biz>: Sender address rejected: Access denied"),
            ("anyone@sub.example.biz",
             "<anyone@sub.example.biz>: Sender address rejected: Access denied"),
            ("", "<>: Sender address rejected: Access denied"),
        ]:
            assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
            assert c.cmd("RCPT TO:<alice@localhost>") == (554, ["5.7.1 " + reply]), sender
            assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<user@nodots>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>") == (
            504, ["5.5.2 <user@nodots>: Sender address rejected: need fully-qualified address"])
        assert c.cmd("RSET")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<alice>") == (
            504, ["5.5.2 <alice>: Recipient address rejected: need fully-qualified address"])
        assert c.cmd("RCPT TO:<blocked@mx.test.example>") == (
            554, ["5.7.1 <blocked@mx.test.example>: Recipient address rejected: Access denied"])
        assert c.cmd("RCPT TO:<closed@mx.test.example>") == (
            550, ["5.1.1 <closed@mx.test.example>: Recipient address rejected: Mailbox closed"])
        assert c.cmd("RCPT TO:<gone@mx.test.example>") == (
            550, ["5.7.1 <gone@mx.test.example>: Recipient address rejected: Access denied"])
        assert c.cmd("RCPT TO:<alice@mx.test.example>") == (250, ["2.1.5 Ok"])
    # OK in the client table ends the client restrictions only: relaying is
    # still refused.
    with session(inst, ("127.0.0.5", 0)) as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<bob@example.com>")[0] == 554
        assert c.cmd("RCPT TO:<alice@mx.test.example>")[0] == 250
    assert inst.find_log(
        r"^NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.3\]: 554 5\.7\.1 "
        r"<unknown\[127\.0\.0\.3\]>: Client host rejected: Access denied; "
        rf"from=<{SENDER}> to=<alice@localhost> proto=ESMTP helo=<{HELO}>$", program="smtpd")


@pytest.fixture
def dns():
    server = DnsServer(mx=[("good.test", "mx.good.test", 10)],
                       hosts=[("mx.good.test", "127.0.0.1"), ("addronly.test", "127.0.0.1"),
                              ("6.0.0.127.rbl.test", "127.0.0.2"),
                              ("7.0.0.127.rbl.test", "127.0.0.4")],
                       null_mx=["nullmx.test"])
    server.start()
    yield server
    server.close()


def test_rbl_and_unknown_sender_domain(make_instance, dns):
    inst = make_instance(extra_main=[
        f"dns_servers = {dns.servers}",
        "smtpd_client_restrictions = reject_rbl_client rbl.test=127.0.0.2",
        "smtpd_sender_restrictions = reject_unknown_sender_domain"])
    with session(inst, ("127.0.0.6", 0)) as c:
        assert c.cmd("MAIL FROM:<a@good.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>") == (
            554, ["5.7.1 Service unavailable; Client host [127.0.0.6] blocked using rbl.test"])
    # Listed with another answer than the one asked for: not blocked.
    with session(inst, ("127.0.0.7", 0)) as c:
        assert c.cmd("MAIL FROM:<a@good.test>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>") == (250, ["2.1.5 Ok"])
    with session(inst) as c:
        # Pipelined while the lookups run: the answers come back in order.
        batch = ["MAIL FROM:<a@nosuch.test>", "RCPT TO:<alice@localhost>", "RSET",
                 "MAIL FROM:<a@good.test>", "RCPT TO:<alice@localhost>", "RSET",
                 "MAIL FROM:<a@addronly.test>", "RCPT TO:<alice@localhost>", "RSET",
                 "MAIL FROM:<a@nullmx.test>", "RCPT TO:<alice@localhost>", "NOOP"]
        c.send("".join(b + "\r\n" for b in batch).encode())
        replies = [c.read_reply() for _ in batch]
        assert replies[1] == (450, ["4.1.8 <a@nosuch.test>: Sender address rejected: "
                                    "Domain not found"]), replies
        assert replies[4] == (250, ["2.1.5 Ok"]), replies
        assert replies[7] == (250, ["2.1.5 Ok"]), replies
        assert replies[10] == (556, ["5.7.27 <a@nullmx.test>: Sender address rejected: "
                                     "Domain nullmx.test does not accept mail (nullMX)"]), replies
        assert replies[11] == (250, ["2.0.0 Ok"])
    assert inst.find_log(
        r"^NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.6\]: 554 5\.7\.1 Service unavailable; "
        r"Client host \[127\.0\.0\.6\] blocked using rbl\.test; from=<a@good\.test> "
        rf"to=<alice@localhost> proto=ESMTP helo=<{HELO}>$", program="smtpd")
