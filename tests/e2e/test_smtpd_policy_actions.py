"""The access(5) actions smtpd hands to cleanup with the message (issue
19): REDIRECT and BCC from a policy service, an access table and
header_checks; HOLD, DISCARD and REDIRECT answered at the end of the
message; the policy request's queue_id once the queue file is named.
Peers: the scripted policy_peers.PolicyServer; delivery to the real
local agent; the installed Postfix as the reference for the log lines
and where the message goes."""

import re
import subprocess

import pytest

from policy_peers import PolicyServer
from postfix_reference import PostfixInstance
from postern_instance import (BUILD, HELO, SENDER, RawSMTP, clean_env, crlf, parse_log,
                              simple_message, wait_until)
from sendmail_helpers import run_sendmail
from tables_fixture import cdb_table, regexp_table

POSTCAT = BUILD / "bin" / "postcat"
CLIENT = r"unknown\[127\.0\.0\.1\]"
TAIL = rf"from=<{SENDER}> to=<{{}}> proto=ESMTP helo=<{HELO}>$"


@pytest.fixture
def policy_server():
    made = []

    def factory(decide):
        made.append(PolicyServer(decide))
        return made[-1]

    yield factory
    for srv in made:
        srv.close()


def transaction(inst, rcpts, subject="actions"):
    """One message to rcpts in its own session: (queue id, RCPT replies)."""
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        replies = [c.cmd(f"RCPT TO:<{r}>") for r in rcpts]
        assert c.cmd("DATA")[0] == 354
        c.send(crlf(simple_message(subject)) + b".\r\n")
        code, text = c.read_reply()
        assert code == 250, text
        assert c.cmd("QUIT")[0] == 221
    return text[0].rsplit(" ", 1)[1], replies


def test_policy_redirect_and_bcc(make_instance, policy_server):
    """BCC adds a recipient; REDIRECT sends the message to one address
    instead of all its recipients, logged as Postfix does; the second
    RCPT's request carries the queue id."""
    answers = {"alice@localhost": "BCC audit@localhost", "bob@localhost": "REDIRECT carol@localhost"}
    srv = policy_server(lambda req: answers.get(req["recipient"], "DUNNO"))
    inst = make_instance(extra_main=[
        f"smtpd_recipient_restrictions = check_policy_service {srv.endpoint}, "
        "reject_unauth_destination"])
    qid, _ = transaction(inst, ["alice@localhost"])
    inst.wait_delivered("alice")
    inst.wait_delivered("audit")
    inst.wait_log(rf"^NOQUEUE: bcc: RCPT from {CLIENT}: <alice@localhost>: Recipient address "
                  r"triggers BCC audit@localhost; " + TAIL.format("alice@localhost"),
                  program="smtpd")
    inst.wait_log(rf"^{qid}: to=<audit@localhost>, relay=local, ", program="local")

    qid, _ = transaction(inst, ["bob@localhost", "dave@localhost"])
    inst.wait_delivered("carol")
    inst.wait_log(rf"^NOQUEUE: redirect: RCPT from {CLIENT}: <bob@localhost>: Recipient address "
                  r"triggers REDIRECT carol@localhost; " + TAIL.format("bob@localhost"),
                  program="smtpd")
    inst.wait_log(rf"^{qid}: to=<carol@localhost>, orig_to=<bob@localhost>, relay=local, .*"
                  r"status=sent ", program="local")
    inst.wait_log(rf"^{qid}: removed$", program="qmgr")
    assert not inst.delivered("bob") and not inst.delivered("dave")
    assert not inst.find_log(rf"^{qid}: to=<(bob|dave)@localhost>")
    # The stream opened at the first recipient: the second's request names the file.
    assert [r["queue_id"] for r in srv.requests[-2:]] == ["", qid]


def test_access_table_redirect_and_header_checks(make_instance):
    """The same actions from check_recipient_access and header_checks
    (where a REDIRECT is logged "redirect: header ..." and also replaces
    the recipients)."""
    inst = make_instance(start=False)
    access = cdb_table(inst, "rcpt_access", ["bob@localhost REDIRECT carol@localhost",
                                             "erin@localhost BCC audit@localhost",
                                             "frank@localhost REDIRECT nobody"])
    checks = regexp_table(inst, "header_checks", ["/^Subject: to-grace/ REDIRECT grace@localhost"])
    inst.append_main_cf(f"smtpd_recipient_restrictions = check_recipient_access {access}, "
                        "reject_unauth_destination", f"header_checks = {checks}")
    inst.start()
    transaction(inst, ["bob@localhost"])
    inst.wait_delivered("carol")
    inst.wait_log(rf"^NOQUEUE: redirect: RCPT from {CLIENT}: <bob@localhost>: Recipient address "
                  r"triggers REDIRECT carol@localhost; ", program="smtpd")
    transaction(inst, ["erin@localhost"])
    inst.wait_delivered("erin")
    inst.wait_delivered("audit")
    transaction(inst, ["frank@localhost"])
    inst.wait_delivered("frank")
    assert inst.find_log(r'^warning: access table entry "REDIRECT nobody" requires user@domain '
                         r"target; treated as DUNNO$", program="smtpd")
    qid, _ = transaction(inst, ["henry@localhost"], subject="to-grace")
    inst.wait_delivered("grace")
    inst.wait_log(rf"^{qid}: redirect: header Subject: to-grace from {CLIENT}; "
                  + TAIL.format("henry@localhost")[:-1] + r": grace@localhost$",
                  program="cleanup")
    inst.wait_log(rf"^{qid}: removed$", program="qmgr")
    assert not inst.delivered("henry")


def test_end_of_data_actions(make_instance, policy_server):
    """HOLD, DISCARD and REDIRECT answered to smtpd_end_of_data_restrictions
    reach cleanup before it commits; the request names the queue file."""
    answers = {"alice@localhost": "HOLD check me", "bob@localhost": "DISCARD",
               "carol@localhost": "REDIRECT dave@localhost"}
    srv = policy_server(lambda req: answers[req["recipient"]]
                        if req["protocol_state"] == "END-OF-MESSAGE" else "DUNNO")
    inst = make_instance(extra_main=[
        f"smtpd_end_of_data_restrictions = check_policy_service {srv.endpoint}"])
    held, _ = transaction(inst, ["alice@localhost"])
    inst.wait_log(rf"^{held}: hold: END-OF-MESSAGE from {CLIENT}: <END-OF-MESSAGE>: "
                  r"End-of-data check me; " + TAIL.format("alice@localhost"), program="smtpd")
    wait_until(lambda: list((inst.queue / "hold").rglob(held)), 10, what="held message")
    dropped, _ = transaction(inst, ["bob@localhost"])
    inst.wait_log(rf"^{dropped}: discard: END-OF-MESSAGE from {CLIENT}: <END-OF-MESSAGE>: "
                  r"End-of-data triggers DISCARD action; ", program="smtpd")
    redirected, _ = transaction(inst, ["carol@localhost"])
    inst.wait_delivered("dave")
    inst.wait_log(rf"^{redirected}: to=<dave@localhost>, orig_to=<carol@localhost>, ",
                  program="local")
    assert not list(inst.queue.rglob(dropped))
    assert not inst.find_log(rf"^{dropped}: to=")
    assert not inst.delivered("alice") and not inst.delivered("bob")
    eod = [r for r in srv.requests if r["protocol_state"] == "END-OF-MESSAGE"]
    assert [r["queue_id"] for r in eod] == [held, dropped, redirected]


def test_redirect_and_bcc_as_postfix(make_instance):
    """The same access table in Postfix 3.7 and Postern, the same session:
    the same redirect: and bcc: lines from smtpd (queue ids aside), and the
    message goes only to the redirect address, the BCC recipient included:
    once, with the first recipient in Postfix's order (audit, the BCC one)
    as orig_to."""
    table = ["bob@localhost REDIRECT carol@localhost", "erin@localhost BCC audit@localhost",
             "gina@localhost HOLD", "hank@localhost REDIRECT ivan@localhost"]
    pf = PostfixInstance(["mydestination = localhost", "local_recipient_maps ="])
    try:
        (pf.etc / "access").write_text("\n".join(table) + "\n")
        with open(pf.etc / "main.cf", "a") as f:
            f.write(f"smtpd_recipient_restrictions = check_recipient_access texthash:"
                    f"{pf.etc}/access, permit_mynetworks, reject_unauth_destination\n")
        pf.start()
        inst = make_instance(start=False)
        access = cdb_table(inst, "access", table)
        inst.append_main_cf(f"smtpd_recipient_restrictions = check_recipient_access {access}, "
                            "reject_unauth_destination")
        inst.start()
        rcpts = ["erin@localhost", "bob@localhost"]
        theirs_id = pf.send(simple_message("as-postfix"), rcpts, SENDER)
        ours_id = inst.send(simple_message("as-postfix"), rcpts)

        def actions(lines):
            return [re.sub(r"^\S+: (\w+): RCPT from \w+\[", r"ID: \1: RCPT from NAME[", t)
                    for t in lines if re.match(r"^\S+: (redirect|bcc): ", t)]
        theirs = wait_until(lambda: (lambda t: t if len(t) == 2 else None)(actions(
            [l.text for l in parse_log(pf.log) if l.program.endswith("/smtpd")])), 15,
            what="Postfix's redirect and bcc lines")
        ours = actions([l.text for l in inst.wait_log(r"^\S+: (redirect|bcc): ",
                                                      program="smtpd", count=2)])
        assert ours == theirs, (ours, theirs)
        # Postfix has no local agent here: its attempts are deferred, logged all the same.
        for qid, log in ((theirs_id, lambda: [l.text for l in parse_log(pf.log)]),
                         (ours_id, lambda: [l.text for l in inst.log_lines()])):
            wait_until(lambda: [t for t in log() if t.startswith(
                f"{qid}: to=<carol@localhost>, orig_to=<audit@localhost>, ")], 30,
                what=f"{qid} redirected")
            assert len([t for t in log() if t.startswith(f"{qid}: to=")]) == 1
        # A held message keeps its redirect; postcat shows it as Postfix's does.
        held = ["gina@localhost", "hank@localhost"]
        theirs = pf.postcat("-e", "-q", pf.send(simple_message("held"), held, SENDER))[1]
        ours_id = inst.send(simple_message("held"), held)
        wait_until(lambda: list((inst.queue / "hold").rglob(ours_id)), 10, what="held message")
        ours = subprocess.run([str(POSTCAT), "-c", str(inst.etc), "-e", "-q", ours_id],
                              capture_output=True, timeout=60, env=clean_env()).stdout
        redirect = [line for line in theirs.decode().splitlines() if "ivan@" in line]
        assert redirect == ["redirect_to: ivan@localhost"], theirs
        assert redirect == [line for line in ours.decode().splitlines() if "ivan@" in line], ours
    finally:
        pf.cleanup()


def test_sendmail_bs_does_not_wait_for_a_queue_id(make_instance, tmp_path):
    """sendmail -bs (smtpd -S, through postdrop) has no restrictions and no
    queue id: a policy service in main.cf does not make it wait for one."""
    inst = make_instance(extra_main=[
        f"smtpd_recipient_restrictions = check_policy_service unix:{tmp_path}/none, "
        "reject_unauth_destination"])
    session = ("EHLO client.example\r\nMAIL FROM:<sender@example.org>\r\n"
               "RCPT TO:<alice@localhost>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n"
               "Subject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    r = run_sendmail(inst, ["-bs"], session)
    assert r.returncode == 0, r.stderr
    assert b"250 2.0.0 Ok: queued" in r.stdout, r.stdout
    inst.wait_delivered("alice")
    inst.wait_delivered("bob")
