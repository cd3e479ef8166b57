"""test_smtpd_unlisted.py - reject_unlisted_sender and
reject_unknown_recipient_domain, with the replies Postfix 3.7 gives for the
same requests (550 5.1.0 ... Sender address rejected: User unknown in ...;
450 4.1.2 ... Recipient address rejected: Domain not found), and neither
applied to a domain this host is the final destination of.
"""
from postern_instance import RawSMTP

HOSTED = [
    "virtual_mailbox_domains = hosted.example",
    "virtual_mailbox_maps = inline:{ known@hosted.example=hosted.example/known/ }",
    "dns_servers = 127.0.0.1:9",   # every lookup fails for the time being
]


def test_unlisted_sender_is_refused_at_rcpt(make_instance):
    inst = make_instance(extra_main=HOSTED + [
        "smtpd_sender_restrictions = reject_unlisted_sender"])
    with RawSMTP(inst.port) as s:
        assert s.read_reply()[0] == 220
        assert s.cmd("EHLO client.example")[0] == 250
        assert s.cmd("MAIL FROM:<nosuch@hosted.example>")[0] == 250
        assert s.cmd("RCPT TO:<alice@localhost>") == (
            550, ["5.1.0 <nosuch@hosted.example>: Sender address rejected: User unknown in "
                  "virtual mailbox table"])
        assert s.cmd("RSET")[0] == 250
        assert s.cmd("MAIL FROM:<known@hosted.example>")[0] == 250
        assert s.cmd("RCPT TO:<alice@localhost>")[0] == 250
        # Not our domain: nothing to check.
        assert s.cmd("RSET")[0] == 250
        assert s.cmd("MAIL FROM:<anyone@elsewhere.example>")[0] == 250
        assert s.cmd("RCPT TO:<alice@localhost>")[0] == 250


def test_unknown_recipient_domain_only_for_other_domains(make_instance):
    inst = make_instance(extra_main=HOSTED + [
        "smtpd_recipient_restrictions = reject_unknown_recipient_domain, permit_mynetworks, "
        "reject_unauth_destination"])
    with RawSMTP(inst.port) as s:
        assert s.read_reply()[0] == 220
        assert s.cmd("EHLO client.example")[0] == 250
        assert s.cmd("MAIL FROM:<a@client.example>")[0] == 250
        assert s.cmd("RCPT TO:<x@nx.example>") == (
            450, ["4.1.2 <x@nx.example>: Recipient address rejected: Domain not found"])
        assert s.cmd("RCPT TO:<alice@localhost>")[0] == 250
        assert s.cmd("RCPT TO:<known@hosted.example>")[0] == 250
    inst.wait_log(r"reject: RCPT from .*: 450 4\.1\.2 <x@nx\.example>: Recipient address "
                  r"rejected: Domain not found; from=<a@client\.example> to=<x@nx\.example>",
                  program="smtpd")
