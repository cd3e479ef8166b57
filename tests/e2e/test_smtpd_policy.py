"""check_policy_service (issue 19): smtpd asks a policy server over
Postfix's attribute protocol and honours its answer as an access(5)
action. Peers are scripted servers (policy_peers.PolicyServer) and the
Debian postgrey. A service that is down, slow or hostile gets
smtpd_policy_service_default_action and a warning, and other sessions go
on meanwhile."""

import threading
import time

import pytest

from policy_peers import CLOSE_MID, GARBAGE, LONG_LINE, SILENT, PolicyServer, Postgrey
from postern_instance import HELO, SENDER, RawSMTP, crlf, simple_message, wait_until
from smtpd_fixture import TLSRaw, make_cert, master_cf, sasl_lines, tls_lines

# As Postfix words it: the default action is an access(5) result too.
DEFAULT = (451, ["4.3.5 <alice@localhost>: Recipient address rejected: Server configuration problem"])


@pytest.fixture
def policy_server():
    made = []

    def factory(decide, **kw):
        srv = PolicyServer(decide, **kw)
        made.append(srv)
        return srv

    yield factory
    for srv in made:
        srv.close()


def rcpt(inst, rcpt_to="alice@localhost", sender=SENDER, auth=None):
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        if auth:
            assert c.cmd(f"AUTH PLAIN {auth}")[0] == 235
        assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
        reply = c.cmd(f"RCPT TO:<{rcpt_to}>")
        assert c.cmd("QUIT")[0] == 221
        return reply


def policy_instance(make_instance, spec, stage="smtpd_recipient_restrictions", extra=()):
    lists = {"smtpd_recipient_restrictions": "reject_unauth_destination"}
    rest = lists.get(stage, "")
    value = f"check_policy_service {spec}" + (f", {rest}" if rest else "")
    return make_instance(extra_main=[f"{stage} = {value}", *extra])


ACTIONS = [
    ("OK", (250, ["2.1.5 Ok"])),
    ("DUNNO", (250, ["2.1.5 Ok"])),
    ("REJECT go away", (554, ["5.7.1 <alice@localhost>: Recipient address rejected: go away"])),
    ("REJECT", (554, ["5.7.1 <alice@localhost>: Recipient address rejected: Access denied"])),
    ("DEFER later", (450, ["4.7.1 <alice@localhost>: Recipient address rejected: later"])),
    ("DEFER 4.2.0 full", (450, ["4.2.0 <alice@localhost>: Recipient address rejected: full"])),
    ("REJECT 5.7.9 bad", (554, ["5.7.9 <alice@localhost>: Recipient address rejected: bad"])),
    ("550 5.7.0 no way", (550, ["5.7.0 <alice@localhost>: Recipient address rejected: no way"])),
    ("421 not now", (421, ["4.7.1 <alice@localhost>: Recipient address rejected: not now"])),
    ("DEFER_IF_PERMIT grey",
     (450, ["4.7.1 <alice@localhost>: Recipient address rejected: grey"])),
    ("DEFER_IF_REJECT maybe", (250, ["2.1.5 Ok"])),
    ("WARN look", (250, ["2.1.5 Ok"])),
    ("INFO note", (250, ["2.1.5 Ok"])),
    ("PREPEND X-Test: 1", (250, ["2.1.5 Ok"])),
    ("PREPEND no header here", (250, ["2.1.5 Ok"])),
    ("REDIRECT bob@localhost", (250, ["2.1.5 Ok"])),
]


def test_every_action(make_instance, policy_server):
    answers = {}
    srv = policy_server(lambda req: answers[req["recipient"]])
    inst = policy_instance(make_instance, srv.endpoint)
    for action, expected in ACTIONS:
        answers["alice@localhost"] = action
        assert rcpt(inst) == expected, action
    inst.wait_log(r"^NOQUEUE: warn: RCPT from unknown\[127\.0\.0\.1\]: look; "
                  rf"from=<{SENDER}> to=<alice@localhost> proto=ESMTP helo=<{HELO}>$",
                  program="smtpd")
    assert inst.find_log(r"^NOQUEUE: info: RCPT from .*: note; ", program="smtpd")
    assert inst.find_log(rf'^warning: access table {srv.endpoint} entry "PREPEND no header '
                         r'here" requires header: text$', program="smtpd")
    # Connections are reused: one for all those requests in each smtpd
    # process that served one of the sessions (one per CPU).
    served_by = {l.pid for l in inst.find_log(r"^connect from ", program="smtpd")}
    assert srv.connections == len(served_by), served_by
    assert len(srv.requests) == len(ACTIONS)
    # Without TLS, as Postfix: no protocol nor cipher, key size 0.
    assert (srv.requests[0]["encryption_protocol"], srv.requests[0]["encryption_cipher"],
            srv.requests[0]["encryption_keysize"]) == ("", "", "0")


def test_defer_if_reject_turns_a_later_reject_into_deferral(make_instance, policy_server):
    srv = policy_server(lambda req: "DEFER_IF_REJECT maybe later")
    inst = make_instance(extra_main=[
        f"smtpd_recipient_restrictions = check_policy_service {srv.endpoint}, "
        "check_recipient_access inline:{bob@localhost=REJECT}, reject_unauth_destination"])
    assert rcpt(inst, "bob@localhost") == (
        450, ["4.7.1 <bob@localhost>: Recipient address rejected: maybe later"])
    assert rcpt(inst) == (250, ["2.1.5 Ok"])


def test_request_attributes(make_instance, policy_server, tmp_path):
    srv = policy_server(lambda req: "DUNNO", unix_path=str(tmp_path / "policy.sock"))
    inst = make_instance(start=False)
    inst.write_master_cf(master_cf(inst.port))
    cert, key = make_cert(inst.root)
    inst.write_main_cf(tls_lines(cert, key) + sasl_lines({"alice": "secret"}) + [
        "smtpd_recipient_restrictions = permit_sasl_authenticated, reject_unauth_destination",
        f"smtpd_relay_restrictions = check_policy_service "
        f"{{ {srv.endpoint}, policy_context=relay, timeout=5s }}, permit_sasl_authenticated, "
        "reject_unauth_destination"])
    inst.start()
    c = TLSRaw.logged_in(inst.port, "alice", "secret")
    assert c.cmd(f"MAIL FROM:<{SENDER}> SIZE=1234")[0] == 250
    assert c.cmd("RCPT TO:<someone@example.org>") == (250, ["2.1.5 Ok"])
    c.close()
    (req,) = srv.requests
    assert req["request"] == "smtpd_access_policy"
    assert req["protocol_state"] == "RCPT"
    assert req["protocol_name"] == "ESMTP"
    assert req["helo_name"] == HELO
    assert req["sender"] == SENDER
    assert req["recipient"] == "someone@example.org"
    assert req["client_address"] == "127.0.0.1"
    assert req["sasl_username"] == "alice"
    assert req["sasl_method"] == "PLAIN"
    assert req["policy_context"] == "relay"
    assert req["size"] == "1234"
    assert req["server_address"] == "127.0.0.1"
    assert req["server_port"] == str(inst.port)
    assert req["encryption_protocol"].startswith("TLSv1"), req
    assert req["encryption_cipher"] and int(req["encryption_keysize"]) >= 128, req
    for name in ("queue_id", "recipient_count", "client_name", "reverse_client_name",
                 "instance", "sasl_sender", "ccert_subject", "ccert_issuer",
                 "ccert_fingerprint", "ccert_pubkey_fingerprint", "etrn_domain", "stress"):
        assert name in req, name


@pytest.mark.parametrize("stage", ["smtpd_client_restrictions", "smtpd_helo_restrictions",
                                   "smtpd_sender_restrictions"])
def test_every_list(make_instance, policy_server, stage):
    srv = policy_server(lambda req: "REJECT no")
    inst = policy_instance(make_instance, srv.endpoint, stage)
    cls = {"smtpd_client_restrictions": ("unknown[127.0.0.1]", "Client host"),
           "smtpd_helo_restrictions": (HELO, "Helo command"),
           "smtpd_sender_restrictions": (SENDER, "Sender address")}[stage]
    assert rcpt(inst) == (554, [f"5.7.1 <{cls[0]}>: {cls[1]} rejected: no"])


HOSTILE = [
    (GARBAGE, "malformed response"),
    (LONG_LINE, "malformed response"),
    (CLOSE_MID, "lost connection"),
    (SILENT, "timeout"),
]


@pytest.mark.parametrize("behaviour,why", HOSTILE)
def test_hostile_server_gets_default_action(make_instance, policy_server, behaviour, why):
    srv = policy_server(lambda req: behaviour)
    inst = make_instance(extra_main=[
        f"smtpd_recipient_restrictions = check_policy_service {srv.endpoint}, "
        "reject_unauth_destination",
        "smtpd_policy_service_timeout = 2s", "smtpd_policy_service_retry_delay = 1s"])
    # Meanwhile another session is served at once.
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", rcpt(inst)))
    start = time.monotonic()
    t.start()
    time.sleep(0.3)
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd("NOOP")[0] == 250
        assert time.monotonic() - start < 2
    t.join(30)
    assert result["r"] == DEFAULT
    warn = rf"^warning: problem talking to server {srv.endpoint[5:]}: {why}$"
    assert len(inst.find_log(warn, program="smtpd")) == 2   # smtpd_policy_service_try_limit
    assert len(srv.requests) == 2


def test_service_down_default_action_option(make_instance, tmp_path):
    inst = make_instance(extra_main=[
        "smtpd_recipient_restrictions = check_policy_service "
        f"{{ unix:{tmp_path}/nothing, default_action=DEFER_IF_PERMIT policy down }}, "
        "reject_unauth_destination"])
    assert rcpt(inst) == (450, ["4.7.1 <alice@localhost>: Recipient address rejected: "
                                "policy down"])
    assert inst.find_log(rf"^warning: problem talking to server {tmp_path}/nothing: ",
                         program="smtpd")


def test_request_limit_and_relative_path(make_instance, policy_server):
    inst = make_instance(start=False)
    inst.write_master_cf(smtpd_maxproc=1)   # every request from one process
    (inst.queue / "private").mkdir(parents=True, exist_ok=True)
    srv = policy_server(lambda req: "DUNNO", unix_path=str(inst.queue / "private" / "policy"))
    inst.append_main_cf(
        "smtpd_recipient_restrictions = check_policy_service private/policy, "
        "reject_unauth_destination",
        "smtpd_policy_service_request_limit = 2")
    inst.start()
    for _ in range(4):
        assert rcpt(inst) == (250, ["2.1.5 Ok"])
    assert len(srv.requests) == 4
    assert srv.connections == 2


def test_postgrey_greylisting(make_instance):
    grey = Postgrey(delay=2)
    try:
        inst = make_instance(extra_main=[
            f"smtpd_recipient_restrictions = check_policy_service {grey.endpoint}, "
            "reject_unauth_destination"])
        code, lines = rcpt(inst)
        assert code == 450, lines
        # Postgrey's own words and enhanced status code, as Postfix shows them.
        assert lines == ["4.2.0 <alice@localhost>: Recipient address rejected: Greylisted, see "
                         "http://postgrey.schweikert.ch/help/localhost.html"], lines
        time.sleep(3)
        assert rcpt(inst) == (250, ["2.1.5 Ok"])
    finally:
        grey.close()


def test_hold_and_discard(make_instance, policy_server):
    """HOLD: the message waits in the hold queue; DISCARD: accepted and
    dropped; each logged in Postfix's words."""
    srv = policy_server(lambda req: {"alice@localhost": "HOLD",
                                     "bob@localhost": "DISCARD spam"}[req["recipient"]])
    inst = policy_instance(make_instance, srv.endpoint)
    held = inst.send(simple_message("held"), rcpts=["alice@localhost"])
    inst.wait_log(r"^NOQUEUE: hold: RCPT from unknown\[127\.0\.0\.1\]: <alice@localhost>: "
                  r"Recipient address triggers HOLD action; "
                  rf"from=<{SENDER}> to=<alice@localhost> proto=ESMTP helo=<{HELO}>$",
                  program="smtpd")
    dropped = inst.send(simple_message("dropped"), rcpts=["bob@localhost"])
    inst.wait_log(r"^NOQUEUE: discard: RCPT from unknown\[127\.0\.0\.1\]: <bob@localhost>: "
                  r"Recipient address spam; ", program="smtpd")
    wait_until(lambda: list((inst.queue / "hold").rglob(held)), 10,
               what="the held message in hold/")
    # Nothing of the discarded message is left, and it goes nowhere.
    assert not list(inst.queue.rglob(dropped))
    assert not inst.find_log(rf"^{dropped}: to=")


def test_prepend_goes_above_received(make_instance, policy_server):
    srv = policy_server(lambda req: f"PREPEND X-Policy: seen {req['recipient']}")
    inst = policy_instance(make_instance, srv.endpoint)
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
        assert c.cmd("RCPT TO:<bob@localhost>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(crlf(simple_message("prepend")) + b".\r\n")
        assert c.read_reply()[0] == 250
        assert c.cmd("QUIT")[0] == 221
    data = inst.wait_delivered("alice")[0].read_bytes().decode()
    headers = data.split("\n\n", 1)[0].split("\n")
    # Each PREPEND in order, above our Received: (after local's own
    # delivery headers).
    at = next(i for i, h in enumerate(headers) if h.startswith("X-Policy:"))
    assert headers[at:at + 3] == ["X-Policy: seen alice@localhost",
                                  "X-Policy: seen bob@localhost",
                                  headers[at + 2]]
    assert headers[at + 2].startswith("Received: from "), headers


def test_client_leaves_while_policy_pending(make_instance, policy_server):
    """A session that ends while its request is out cancels it; the
    answer that comes later finds nothing, and smtpd goes on."""
    release = threading.Event()

    def decide(req):
        if req["recipient"] == "slow@localhost":
            release.wait(10)
        return "DUNNO"

    srv = policy_server(decide)
    inst = policy_instance(make_instance, srv.endpoint)
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        c.send(b"RCPT TO:<slow@localhost>\r\n")
        time.sleep(0.3)
    release.set()
    assert rcpt(inst) == (250, ["2.1.5 Ok"])
    [lost] = inst.wait_log(r"^lost connection after RCPT from unknown\[127\.0\.0\.1\]$",
                           program="smtpd")
    assert lost.pid in inst.pids("smtpd")
    assert not inst.find_log(r"exit status|killed by signal|fatal:")


def test_data_restrictions(make_instance, policy_server):
    srv = policy_server(lambda req: "REJECT not now" if req["protocol_state"] == "DATA"
                        else "DUNNO")
    inst = make_instance(extra_main=[
        f"smtpd_recipient_restrictions = check_policy_service {srv.endpoint}, "
        "reject_unauth_destination",
        f"smtpd_data_restrictions = check_policy_service {srv.endpoint}"])
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
        assert c.cmd("RCPT TO:<bob@localhost>")[0] == 250
        assert c.cmd("DATA") == (554, ["5.7.1 <DATA>: Data command rejected: not now"])
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("QUIT")[0] == 221
    data_req = srv.requests[-1]
    assert (data_req["protocol_state"], data_req["recipient_count"], data_req["recipient"]) == (
        "DATA", "2", "")
    # The queue file is named by then (the stream opened at the first RCPT).
    assert data_req["queue_id"] and srv.requests[1]["queue_id"] == data_req["queue_id"]
    assert [r["protocol_state"] for r in srv.requests[:2]] == ["RCPT", "RCPT"]
    inst.wait_log(r"^\w+: reject: DATA from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 <DATA>: Data "
                  rf"command rejected: not now; from=<{SENDER}> proto=ESMTP helo=<{HELO}>$",
                  program="smtpd")


def test_data_restrictions_permit_goes_on(make_instance):
    inst = make_instance(extra_main=["smtpd_data_restrictions = permit_mynetworks, reject"])
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(crlf(simple_message("data ok")) + b".\r\n")
        assert c.read_reply()[0] == 250
    with RawSMTP(inst.port, source=("127.0.0.2", 0)) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
        assert c.cmd("DATA") == (554, ["5.7.1 <DATA>: Data command rejected: Access denied"])


def test_end_of_data_restrictions(make_instance, policy_server):
    """smtpd_end_of_data_restrictions: asked once the content is in
    (protocol_state END-OF-MESSAGE, the message's size, the one
    recipient); a refusal is Postfix's <END-OF-MESSAGE> reply, the message
    is not queued, and the session goes on."""
    answers = ["REJECT too much", "DUNNO"]
    srv = policy_server(lambda req: answers.pop(0))
    inst = make_instance(extra_main=[
        f"smtpd_end_of_data_restrictions = check_policy_service {srv.endpoint}"])
    body = crlf(simple_message("eod")) + b".\r\n"
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        for expected in ((554, ["5.7.1 <END-OF-MESSAGE>: End-of-data rejected: too much"]),
                         250):
            assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
            assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(body)
            reply = c.read_reply()
            assert reply == expected or reply[0] == expected, reply
        assert c.cmd("QUIT")[0] == 221
    req = srv.requests[0]
    assert (req["protocol_state"], req["recipient"], req["recipient_count"]) == (
        "END-OF-MESSAGE", "alice@localhost", "1")
    assert int(req["size"]) >= len(body) - 3, req
    inst.wait_log(r"^\w+: reject: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 "
                  r"<END-OF-MESSAGE>: End-of-data rejected: too much; "
                  rf"from=<{SENDER}> to=<alice@localhost> proto=ESMTP helo=<{HELO}>$",
                  program="smtpd")
    assert len(inst.wait_delivered("alice", 1)) == 1
