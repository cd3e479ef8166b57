"""smtpd ESMTP parameters: DSN (RFC 3461: RET and ENVID on MAIL, NOTIFY and
ORCPT on RCPT, xtext-decoded, CR/LF/NUL refused) stored in the queue file
as dsn_ret/dsn_envid attributes and P/N records before their recipient;
SMTPUTF8 (RFC 6531) advertised and carried into the queue file, and a
UTF-8 address without it refused with 553 5.6.7."""

from postern_instance import HELO, SENDER, QUEUED_RE, RawSMTP, crlf, simple_message, wait_until
from queue_fixture import parse_records
from smtpd_fixture import master_cf


def held_instance(make_instance):
    """An instance without qmgr: accepted messages stay in incoming/."""
    inst = make_instance(start=False)
    inst.write_master_cf(master_cf(inst.port, qmgr=False))
    inst.start()
    return inst


def session(inst):
    c = RawSMTP(inst.port)
    assert c.read_reply()[0] == 220
    code, ehlo = c.cmd(f"EHLO {HELO}")
    assert code == 250
    c.ehlo = ehlo
    return c


def finish(c, inst):
    """DATA with a small message; returns the queue file's records."""
    assert c.cmd("DATA")[0] == 354
    c.send(crlf(simple_message(subject="esmtp")) + b".\r\n")
    code, texts = c.read_reply()
    assert code == 250, texts
    qid = QUEUED_RE.match(texts[0])["id"]
    path = wait_until(lambda: [p for p in inst.queue_files() if p.name == qid], 10,
                      what="the queue file")[0]
    return [(t, p) for t, p, _ in parse_records(path.read_bytes())]


def test_dsn_parameters_are_stored(make_instance):
    inst = held_instance(make_instance)
    with session(inst) as c:
        assert "DSN" in c.ehlo, c.ehlo
        assert c.cmd(f"MAIL FROM:<{SENDER}> RET=HDRS ENVID=abc+2Bdef+3D1") == (250, ["2.1.0 Ok"])
        assert c.cmd("RCPT TO:<alice@localhost> NOTIFY=SUCCESS,FAILURE "
                     "ORCPT=rfc822;Alice+40example.com") == (250, ["2.1.5 Ok"])
        assert c.cmd("RCPT TO:<bob@localhost>") == (250, ["2.1.5 Ok"])
        assert c.cmd("RCPT TO:<carol@localhost> NOTIFY=NEVER") == (250, ["2.1.5 Ok"])
        records = finish(c, inst)
    attrs = [p.decode() for t, p in records if t == "A"]
    assert "dsn_ret=HDRS" in attrs and "dsn_envid=abc+def=1" in attrs, attrs
    env = [(t, p.decode()) for t, p in records if t in "PNR"]
    assert env == [("P", "rfc822;Alice@example.com"), ("N", "6"), ("R", "alice@localhost"),
                   ("R", "bob@localhost"), ("N", "1"), ("R", "carol@localhost")], env


def test_bad_dsn_parameters(make_instance):
    # Many errors in a row: keep the soft error limit's delay out of the way.
    inst = make_instance(extra_main=["smtpd_soft_error_limit = 100"])
    with session(inst) as c:
        for params, reply in [
            ("ENVID=a+0Db", "501 5.5.4 Bad ENVID parameter syntax"),      # CR
            ("ENVID=a+0A", "501 5.5.4 Bad ENVID parameter syntax"),       # LF
            ("ENVID=a+00", "501 5.5.4 Bad ENVID parameter syntax"),       # NUL
            ("ENVID=a+G1", "501 5.5.4 Bad ENVID parameter syntax"),
            ("ENVID=" + "x" * 101, "501 5.5.4 Bad ENVID parameter syntax"),
            ("RET=ALL", "501 5.5.4 Bad RET parameter syntax"),
            ("RET=FULL RET=HDRS", "501 5.5.4 Bad RET parameter syntax"),
            ("FOO=1", "555 5.5.4 Unsupported option: FOO=1"),
        ]:
            code, texts = c.cmd(f"MAIL FROM:<{SENDER}> {params}")
            assert f"{code} {texts[0]}" == reply, params
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        for params, reply in [
            ("NOTIFY=NEVER,SUCCESS", "501 5.5.4 Bad NOTIFY parameter syntax"),
            ("NOTIFY=SOMETIMES", "501 5.5.4 Bad NOTIFY parameter syntax"),
            ("NOTIFY=", "501 5.5.4 Bad NOTIFY parameter syntax"),
            ("ORCPT=rfc822;a+0D+0Ab@example.com", "501 5.5.4 Bad ORCPT parameter syntax"),
            ("ORCPT=rfc822;a+00@example.com", "501 5.5.4 Bad ORCPT parameter syntax"),
            ("ORCPT=a@example.com", "501 5.5.4 Bad ORCPT parameter syntax"),
            ("FOO", "555 5.5.4 Unsupported option: FOO"),
        ]:
            code, texts = c.cmd(f"RCPT TO:<alice@localhost> {params}")
            assert f"{code} {texts[0]}" == reply, params
        assert c.cmd("RCPT TO:<alice@localhost>") == (250, ["2.1.5 Ok"])


def test_smtputf8(make_instance):
    inst = held_instance(make_instance)
    with session(inst) as c:
        assert "SMTPUTF8" in c.ehlo, c.ehlo
        assert c.cmd("MAIL FROM:<jörg@exämple.org>") == (
            553, ["5.6.7 Must declare SMTPUTF8 to send unicode address"])
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert c.cmd("RCPT TO:<björn@localhost>") == (
            553, ["5.6.7 Must declare SMTPUTF8 to send unicode address"])
        assert c.cmd("RSET")[0] == 250
        c.send(b"MAIL FROM:<bad\xff\xfe@example.org> SMTPUTF8\r\n")
        assert c.read_reply() == (501, ["5.1.7 Bad sender address syntax"])
        assert c.cmd('MAIL FROM:<"jörg q"@exämple.org> SMTPUTF8') == (250, ["2.1.0 Ok"])
        assert c.cmd("RCPT TO:<alice@localhost>") == (250, ["2.1.5 Ok"])
        records = finish(c, inst)
    sender = [p for t, p in records if t == "S"]
    assert sender == ["jörg q@exämple.org".encode()], sender
    attrs = [p.decode() for t, p in records if t == "A"]
    assert "protocol=UTF8SMTP" in attrs, attrs
