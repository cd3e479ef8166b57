"""Address rewriting in cleanup, end to end on a real instance, in Postfix's
order: canonical form (append_dot_mydomain), sender_canonical_maps and
recipient_canonical_maps (envelope and headers), masquerade_domains with
masquerade_exceptions, virtual_alias_maps (recursion, unmatched extensions,
loops and the expansion limit), which headers are rewritten for which
clients (local_header_rewrite_clients, remote_header_rewrite_domain), and
local submissions through sendmail.
"""

import re

from postern_instance import HOSTNAME, RawSMTP, crlf, rfc2822_now
from sendmail_helpers import run_sendmail
from tables_fixture import cdb_table, header_values


def message(sender_header, to_header="alice@localhost", subject="rewrite", extra=()):
    lines = [f"From: {sender_header}", f"To: {to_header}", f"Subject: {subject}",
             f"Date: {rfc2822_now()}", f"Message-ID: <{subject.replace(' ', '-')}@client.example>",
             *extra]
    return "\n".join(lines) + "\n\nbody\n"


def delivered(inst, user, count=1):
    return [p.read_bytes() for p in inst.wait_delivered(user, count)]


def test_sender_canonical_rewrites_return_path_and_from(make_instance):
    inst = make_instance(start=False)
    canon = cdb_table(inst, "sender_canonical", ["joe@localhost joe.user@example.com"])
    inst.append_main_cf(f"sender_canonical_maps = {canon}")
    inst.start()
    qid = inst.send(message("Joe User <joe@localhost>", "bob@localhost"), ["alice@localhost"],
                    sender="joe@localhost")
    [data] = delivered(inst, "alice")
    assert data.startswith(b"Return-Path: <joe.user@example.com>\n"), data[:200]
    assert header_values(data, "From") == ["Joe User <joe.user@example.com>"]
    # A recipient is not a sender: recipient headers are left alone.
    assert header_values(data, "To") == ["bob@localhost"]
    inst.wait_log(rf"^{qid}: from=<joe\.user@example\.com>, size=\d+, nrcpt=1",
                  program="qmgr")


def test_recipient_canonical_keeps_the_original_recipient(make_instance):
    inst = make_instance(start=False)
    canon = cdb_table(inst, "rcpt_canonical", ["robert@localhost bob@localhost"])
    inst.append_main_cf(f"recipient_canonical_maps = {canon}")
    inst.start()
    qid = inst.send(message("sender@example.org", "Robert <robert@localhost>"),
                    ["robert@localhost"])
    [data] = delivered(inst, "bob")
    assert header_values(data, "To") == ["Robert <bob@localhost>"]
    inst.wait_log(rf"^{qid}: to=<bob@localhost>, orig_to=<robert@localhost>, relay=local, "
                  r".*status=sent", program="local")


def test_masquerading_strips_subdomains_except_for_root(make_instance):
    inst = make_instance(extra_main=["masquerade_domains = example.com",
                                     "masquerade_exceptions = root"])
    qid = inst.send(message("User <user@host.example.com>", "Team <team@mail.example.com>",
                            subject="masq user"),
                    ["alice@localhost"], sender="user@host.example.com")
    qid_root = inst.send(message("root@host.example.com", subject="masq root"),
                         ["alice@localhost"], sender="root@host.example.com")
    files = {b"masq user" in d and "user" or "root": d for d in delivered(inst, "alice", 2)}
    user, root = files["user"], files["root"]
    assert user.startswith(b"Return-Path: <user@example.com>\n")
    assert header_values(user, "From") == ["User <user@example.com>"]
    assert header_values(user, "To") == ["Team <team@example.com>"]
    assert root.startswith(b"Return-Path: <root@host.example.com>\n")
    assert header_values(root, "From") == ["root@host.example.com"]
    inst.wait_log(rf"^{qid}: from=<user@example\.com>,", program="qmgr")
    inst.wait_log(rf"^{qid_root}: from=<root@host\.example\.com>,", program="qmgr")


def test_remote_client_headers_follow_remote_header_rewrite_domain(make_instance):
    # No client counts as local here: envelopes are still rewritten, headers
    # only get remote_header_rewrite_domain for incomplete addresses.
    inst = make_instance(start=False)
    canon = cdb_table(inst, "canonical", ["joe@localhost joe.user@example.com"])
    inst.append_main_cf(f"canonical_maps = {canon}", "local_header_rewrite_clients =")
    inst.start()
    inst.send(message("joe@localhost", "carol", subject="untouched"), ["alice@localhost"],
              sender="joe@localhost")
    [data] = delivered(inst, "alice")
    assert data.startswith(b"Return-Path: <joe.user@example.com>\n")
    assert header_values(data, "From") == ["joe@localhost"]
    assert header_values(data, "To") == ["carol"]

    inst.append_main_cf("remote_header_rewrite_domain = domain.invalid")
    rc, out = inst.postern("reload")
    assert rc == 0, out
    inst.wait_log(r"reload -- version", program="master")
    deadline_subject = "remote domain"
    inst.send(message("joe@localhost", "carol", subject=deadline_subject), ["bob@localhost"],
              sender="joe@localhost")
    [data] = delivered(inst, "bob")
    assert header_values(data, "From") == ["joe.user@example.com"]
    assert header_values(data, "To") == ["carol@domain.invalid"]


def test_append_dot_mydomain_completes_partial_domains(make_instance):
    inst = make_instance(extra_main=["append_dot_mydomain = yes", "mydomain = test.example"])
    qid = inst.send(message("sender@example.org"), ["alice@mx"])
    inst.wait_delivered("alice")
    inst.wait_log(rf"^{qid}: to=<alice@mx\.test\.example>, orig_to=<alice@mx>, relay=local,",
                  program="local")


def test_virtual_alias_recursion_and_unmatched_extension(make_instance):
    inst = make_instance(start=False)
    valias = cdb_table(inst, "virtual", [
        "help@localhost support@localhost",
        "support@localhost alice@localhost, bob@localhost",
        "joe@localhost carol@localhost",
    ])
    inst.append_main_cf(f"virtual_alias_maps = {valias}", "recipient_delimiter = +")
    inst.start()
    qid = inst.send(message("sender@example.org"), ["help@localhost", "joe+lists@localhost"])
    for user in ("alice", "bob", "carol"):
        assert len(inst.wait_delivered(user)) == 1
    inst.wait_log(rf"^{qid}: to=<alice@localhost>, orig_to=<help@localhost>, relay=local,",
                  program="local")
    inst.wait_log(rf"^{qid}: to=<bob@localhost>, orig_to=<help@localhost>, relay=local,",
                  program="local")
    inst.wait_log(rf"^{qid}: to=<carol\+lists@localhost>, orig_to=<joe\+lists@localhost>, "
                  r"relay=local,", program="local")
    inst.wait_log(rf"^{qid}: from=<sender@example\.org>, size=\d+, nrcpt=3 ", program="qmgr")


def test_alias_loop_ends_and_expansion_limit_refuses_the_message(make_instance):
    inst = make_instance(start=False)
    valias = cdb_table(inst, "virtual", [
        "ping@localhost pong@localhost",
        "pong@localhost ping@localhost",
        "crowd@localhost a1@localhost, a2@localhost, a3@localhost, a4@localhost",
    ])
    inst.append_main_cf(f"virtual_alias_maps = {valias}", "virtual_alias_expansion_limit = 3")
    inst.start()
    # A loop stops at the first address met twice, which is delivered as is.
    qid = inst.send(message("sender@example.org"), ["ping@localhost"])
    inst.wait_delivered("ping")
    inst.wait_log(rf"^{qid}: removed$", program="qmgr")
    assert not inst.delivered("pong")

    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd("EHLO client.example")[0] == 250
        assert c.cmd("MAIL FROM:<sender@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<crowd@localhost>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(crlf(message("sender@example.org")) + b".\r\n")
        code, texts = c.read_reply()
    assert (code, texts) == (451, ["4.3.0 Error: message not accepted, try again later"])
    line = inst.wait_log(r"^warning: (\w+): unreasonable virtual_alias_maps map expansion size for "
                         r"crowd@localhost -- message not accepted, try again later$",
                         program="cleanup")[0]
    refused = line.text.split(": ")[1]
    assert not inst.find_log(rf"^{refused}: from=", program="qmgr")
    assert not inst.queue_files()
    assert not any(inst.delivered(f"a{i}") for i in range(1, 5))


def test_sendmail_mail_gets_canonical_and_virtual_rewriting(make_instance):
    inst = make_instance(start=False)
    canon = cdb_table(inst, "canonical", [f"@{HOSTNAME} @example.com"])
    valias = cdb_table(inst, "virtual", ["staff@example.com alice@localhost"])
    inst.append_main_cf(f"sender_canonical_maps = {canon}", f"virtual_alias_maps = {valias}")
    inst.start()
    r = run_sendmail(inst, ["-f", "dave", "staff@example.com"],
                     "From: dave\nTo: staff@example.com\nSubject: local\n\nhi\n")
    assert (r.returncode, r.stderr) == (0, b"")
    [data] = delivered(inst, "alice")
    assert data.startswith(b"Return-Path: <dave@example.com>\n"), data[:100]
    assert header_values(data, "From") == ["dave@example.com"]
    line = inst.wait_log(r"^\w+: to=<alice@localhost>, orig_to=<staff@example\.com>, "
                         r"relay=local,", program="local")[0]
    assert re.match(r"^\w+: ", line.text)
