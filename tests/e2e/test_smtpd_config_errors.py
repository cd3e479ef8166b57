"""A configuration error is a 451 for the request, never a crash loop
(issue 15). An unknown restriction, a Postfix restriction Postern does not
implement, relay and recipient restrictions without an open-relay guard,
and a table that cannot be opened (an unsupported type) each give one
warning naming the parameter when smtpd starts, and `451 4.3.5` for every
request that reaches them (the table form quoting the name and what was
rejected, as Postfix words it); smtpd stays up (its processes are never
restarted or throttled) and the rest of the configuration keeps working."""

import re

from postern_instance import HELO, SENDER, RawSMTP, wait_until
from smtpd_fixture import plain_response

CONFIG_ERROR = (451, ["4.3.5 Server configuration error"])


def rcpt(inst, source=None, sender=SENDER, rcpt_to="alice@localhost"):
    with RawSMTP(inst.port, source=(source, 0) if source else None) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
        reply = c.cmd(f"RCPT TO:<{rcpt_to}>")
        assert c.cmd("QUIT")[0] == 221
        return reply


def stays_up(inst, warning, count=1):
    """The smtpd processes that served the sessions (one per CPU) are all
    still there, master never saw one fail, and each logged the warning (a
    regex) count times, when it started."""
    pids = set(inst.pids("smtpd"))
    assert {l.pid for l in inst.find_log(r"^connect from ", program="smtpd")} <= pids, pids
    assert not inst.find_log(r"bad command startup|throttling|exit status|killed by signal|fatal:")
    # A process master started last may still be reading its settings.
    wait_until(lambda: sorted(l.pid for l in inst.find_log(warning, program="smtpd"))
               == sorted(list(pids) * count), 10, what=f"{count} warning(s) from each of {pids}")


def test_unknown_restriction(make_instance):
    inst = make_instance(extra_main=[
        "smtpd_client_restrictions = permit_mynetworks, bogus_restriction",
        "smtpd_sender_restrictions = check_sender_access inline:{spammer@example.net=REJECT}"])
    for _ in range(2):
        assert rcpt(inst, "127.0.0.2") == CONFIG_ERROR
    # Restrictions before it and other lists work as configured.
    assert rcpt(inst) == (250, ["2.1.5 Ok"])
    assert rcpt(inst, sender="spammer@example.net") == (
        554, ["5.7.1 <spammer@example.net>: Sender address rejected: Access denied"])
    inst.wait_log(r"^NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: 451 4\.3\.5 Server "
                  rf"configuration error; from=<{SENDER}> to=<alice@localhost> proto=ESMTP "
                  rf"helo=<{HELO}>$", program="smtpd", count=2)
    stays_up(inst, r'^warning: smtpd_client_restrictions: unknown smtpd restriction: '
                   r'"bogus_restriction"; requests that reach it get "451 4\.3\.5 Server '
                   r'configuration error"$')


def test_restrictions_postern_does_not_implement(make_instance):
    inst = make_instance(extra_main=[
        "smtpd_client_restrictions = permit_mynetworks, permit_tls_clientcerts",
        "smtpd_recipient_restrictions = check_recipient_access inline:{bob@localhost=REJECT}, "
        "check_sender_mx_access inline:{example.org=OK}, reject_unauth_destination"])
    assert rcpt(inst, "127.0.0.2") == CONFIG_ERROR
    # The recipient table before it still decides; the MX table's
    # argument was skipped, not taken for a restriction.
    assert rcpt(inst, rcpt_to="bob@localhost") == (
        554, ["5.7.1 <bob@localhost>: Recipient address rejected: Access denied"])
    assert rcpt(inst) == CONFIG_ERROR
    stays_up(inst, r"^warning: smtpd_client_restrictions: smtpd restriction "
                   r'"permit_tls_clientcerts" is not implemented in Postern; requests that reach '
                   r'it get "451 4\.3\.5 Server configuration error"$')
    assert len(inst.find_log(r'^warning: smtpd_recipient_restrictions: smtpd restriction '
                             r'"check_sender_mx_access" is not implemented in Postern; ',
                             program="smtpd")) == len(inst.pids("smtpd"))
    assert not inst.find_log(r"unknown smtpd restriction")


def test_no_open_relay_guard(make_instance):
    inst = make_instance(extra_main=[
        "smtpd_client_restrictions = check_client_access inline:{127.0.0.3=REJECT}",
        "smtpd_relay_restrictions = permit_mynetworks",
        "smtpd_recipient_restrictions ="])
    # Nothing relays, nothing is accepted: every recipient gets 451...
    assert rcpt(inst) == CONFIG_ERROR
    assert rcpt(inst, "127.0.0.2", rcpt_to="bob@example.com") == CONFIG_ERROR
    # ...unless an earlier list refuses it anyway.
    assert rcpt(inst, "127.0.0.3") == (
        554, ["5.7.1 <unknown[127.0.0.3]>: Client host rejected: Access denied"])
    stays_up(inst, r"^warning: in parameter smtpd_relay_restrictions or "
                   r"smtpd_recipient_restrictions, specify at least one working instance of: "
                   r"reject_unauth_destination, defer_unauth_destination, reject or defer; "
                   r'every recipient gets "451 4\.3\.5 Server configuration error"$')


def test_tables_that_cannot_be_opened(make_instance):
    inst = make_instance(extra_main=[
        "smtpd_client_restrictions = permit_mynetworks, "
        "check_client_access memcache:/etc/postern/client_access",
        "smtpd_sender_restrictions = check_sender_access memcache:/x"])
    assert rcpt(inst, "127.0.0.2") == (
        451, ["4.3.5 <unknown[127.0.0.2]>: Client host rejected: Server configuration error"])
    # 127.0.0.1 passes the client list and reaches the sender table.
    assert rcpt(inst) == (
        451, [f"4.3.5 <{SENDER}>: Sender address rejected: Server configuration error"])
    assert rcpt(inst, sender="") == (
        451, ["4.3.5 <>: Sender address rejected: Server configuration error"])
    inst.wait_log(r"^NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: 451 4\.3\.5 "
                  r"<unknown\[127\.0\.0\.2\]>: Client host rejected: Server configuration error; ",
                  program="smtpd")
    stays_up(inst, r"^warning: smtpd_client_restrictions: check_client_access "
                   r"memcache:/etc/postern/client_access is unavailable\. unsupported dictionary "
                   r"type: memcache$")
    assert len(inst.find_log(r"^warning: smtpd_sender_restrictions: check_sender_access "
                             r"memcache:/x is unavailable\. unsupported dictionary type: memcache$")) == len(
                                 inst.pids("smtpd"))


def test_sender_login_maps_that_cannot_be_opened(make_instance):
    inst = make_instance(extra_main=[
        "smtpd_sender_login_maps = memcache:/etc/postern/senders",
        "smtpd_sender_restrictions = reject_sender_login_mismatch"])
    for _ in range(2):
        assert rcpt(inst) == (
            451, [f"4.3.5 <{SENDER}>: Sender address rejected: Server configuration error"])
    assert rcpt(inst, sender="") == (250, ["2.1.5 Ok"])   # the null sender needs no owner
    stays_up(inst, r"^warning: smtpd_sender_login_maps: memcache:/etc/postern/senders is "
                   r"unavailable\. unsupported dictionary type: memcache$")


def test_sasl_password_maps_that_cannot_be_opened(make_instance):
    inst = make_instance(extra_main=[
        "smtpd_sasl_auth_enable = yes", "smtpd_tls_auth_only = no",
        "smtpd_sasl_password_maps = memcache:/etc/postern/sasl"])
    for _ in range(2):
        with RawSMTP(inst.port) as c:
            assert c.read_reply()[0] == 220
            assert c.cmd(f"EHLO {HELO}")[0] == 250
            # A temporary failure, not a wrong password.
            code, text = c.cmd("AUTH PLAIN " + plain_response("bob", "secret"))
            assert code == 454 and text[0].startswith("4.7.0 Temporary authentication failure"), \
                (code, text)
            assert c.cmd("QUIT")[0] == 221
    stays_up(inst, r"^warning: smtpd_sasl_password_maps: memcache:/etc/postern/sasl is "
                   r"unavailable\. unsupported dictionary type: memcache$")
    assert rcpt(inst) == (250, ["2.1.5 Ok"])
    assert not re.search("authentication failed: authentication failure", inst.log_tail())
