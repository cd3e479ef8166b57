"""test_stack_configs.py - the main.cf/master.cf shapes of common turnkey
mail stacks load and deliver (issue 15).

The tests write configurations with the structure of docker-mailserver's
and iRedMail's published files: postscreen in front of smtpd (pass),
submission and submissions services with -o overrides, a sender-cleanup
service, pipe transports (Dovecot's deliver, maildrop), an lmtp
virtual_transport, milters, policy services, SQL tables and an after-queue
content filter with its reinjection smtpd. Only ports and paths are the
test's. What Postern does not have yet must be named by `postern check`;
everything else must work: nothing crash-loops, mail is delivered where
the configuration needs nothing Postern lacks, mail for a missing
transport stays queued, and a table Postern cannot read is a temporary
refusal.
"""
import getpass
import re
import smtplib

import pytest

from postern_instance import (HELO, LIBEXEC, POSTERN, Instance, RawSMTP, clean_env, free_port,
                              run_logged, send_in_session, simple_message, wait_until)
from smtpd_fixture import make_cert


def common_main_cf(inst, cert, key):
    return [
        f"queue_directory = {inst.queue}",
        f"mail_spool_directory = {inst.mail}",
        f"maillog_file = {inst.log}",
        f"daemon_directory = {LIBEXEC}",
        f"command_directory = {POSTERN.parent}",
        f"mail_owner = {getpass.getuser()}",
        "dns_servers = 127.0.0.1:9",
        f"smtpd_tls_cert_file = {cert}",
        f"smtpd_tls_key_file = {key}",
    ]


def docker_mailserver(inst, port, sub_port, subs_port, cert, key):
    """docker-mailserver's shape: postscreen on 25, submission(s) with
    SASL through Dovecot, virtual mailboxes delivered over LMTP, OpenDKIM
    and OpenDMARC milters, SPF through a spawned policy service."""
    main = common_main_cf(inst, cert, key) + [
        "smtpd_banner = $myhostname ESMTP",
        "disable_vrfy_command = yes",
        "readme_directory = no",
        "compatibility_level = 3.6",
        "smtpd_tls_security_level = may",
        "smtpd_tls_auth_only = yes",
        "smtpd_tls_mandatory_protocols = !SSLv2,!SSLv3,!TLSv1,!TLSv1.1",
        "smtpd_tls_protocols = !SSLv2,!SSLv3,!TLSv1,!TLSv1.1",
        "smtpd_tls_mandatory_ciphers = high",
        "smtp_tls_security_level = may",
        "smtp_tls_loglevel = 1",
        "tls_ssl_options = NO_COMPRESSION",
        "tls_high_cipherlist = ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256",
        "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated "
        "defer_unauth_destination",
        "myhostname = mail.dms.example",
        "mydestination = localhost.$mydomain, localhost",
        "mynetworks = 127.0.0.0/8 [::1]/128",
        "mailbox_size_limit = 0",
        "recipient_delimiter = +",
        "inet_interfaces = all",
        "inet_protocols = all",
        "smtpd_helo_required = yes",
        "smtpd_delay_reject = yes",
        "smtpd_helo_restrictions = permit_mynetworks, reject_invalid_helo_hostname, permit",
        "smtpd_sender_restrictions = $dms_smtpd_sender_restrictions",
        "dms_smtpd_sender_restrictions = permit_sasl_authenticated, permit_mynetworks, "
        "reject_unknown_sender_domain",
        "smtpd_recipient_restrictions = permit_sasl_authenticated, permit_mynetworks, "
        "reject_unauth_destination",
        "smtpd_client_restrictions = permit_mynetworks, permit_sasl_authenticated, "
        "reject_unauth_destination",
        "virtual_mailbox_domains = dms.example",
        f"virtual_mailbox_maps = inline:{{ alice@dms.example=dms.example/alice/ }}",
        f"virtual_mailbox_base = {inst.mail}/vhosts",
        "virtual_transport = lmtp:unix:/var/run/dovecot/lmtp",
        "virtual_alias_maps = inline:{ postmaster@dms.example=alice@dms.example }",
        "milter_protocol = 6",
        "milter_default_action = accept",
        "dkim_milter = inet:localhost:8891",
        "dmarc_milter = inet:localhost:8893",
        "smtpd_milters = $dkim_milter,$dmarc_milter",
        "non_smtpd_milters = $dkim_milter",
        "smtpd_sasl_auth_enable = yes",
        "smtpd_sasl_path = /dev/shm/sasl-auth.sock",
        "smtpd_sasl_type = dovecot",
        "smtpd_sasl_security_options = noanonymous",
        "smtpd_sasl_local_domain = $mydomain",
        "broken_sasl_auth_clients = yes",
        "postscreen_dnsbl_action = enforce",
        "postscreen_greet_action = enforce",
        "policyd-spf_time_limit = 3600",
    ]
    master = f"""\
127.0.0.1:{port}      inet  n       -       n       -       1       postscreen
smtpd     pass  -       -       n       -       -       smtpd
  -o smtpd_sasl_auth_enable=no
  -o smtpd_sender_restrictions=$smtpd_sender_restrictions
127.0.0.1:{sub_port} inet n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_reject_unlisted_recipient=no
  -o smtpd_sasl_authenticated_header=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_restrictions=$mua_sender_restrictions
  -o smtpd_discard_ehlo_keywords=
  -o milter_macro_daemon_name=ORIGINATING
  -o cleanup_service_name=sender-cleanup
127.0.0.1:{subs_port} inet n      -       n       -       -       smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
pickup    fifo  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      fifo  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
dnsblog   unix  -       -       n       -       0       dnsblog
tlsproxy  unix  -       -       n       -       0       tlsproxy
sender-cleanup unix n   -       n       -       0       cleanup
  -o syslog_name=postfix/sender-cleanup
  -o header_checks=pcre:/etc/postfix/maps/sender_header_filter.pcre
policyd-spf unix -      n       n       -       0       spawn
  user=policyd-spf argv=/usr/bin/policyd-spf
"""
    return main, master


def iredmail(inst, port, sub_port, reinject_port, cert, key):
    """iRedMail's shape: SQL tables through proxy:, a Dovecot deliver pipe
    transport, an amavisd content filter with its reinjection smtpd on
    10025-style port, policy services."""
    sqldir = inst.root / "mysql"
    sqldir.mkdir()
    for name in ("virtual_mailbox_domains", "virtual_mailbox_maps", "virtual_alias_maps"):
        (sqldir / f"{name}.cf").write_text("hosts = 127.0.0.1:9\nuser = vmail\npassword = x\n"
                                           "dbname = vmail\nquery = SELECT 1\n")
    main = common_main_cf(inst, cert, key) + [
        "compatibility_level = 2",
        "myhostname = mx.ired.example",
        "myorigin = mx.ired.example",
        "mydomain = ired.example",
        "mydestination = $myhostname, localhost, localhost.localdomain",
        "mynetworks = 127.0.0.1 [::1]",
        "mynetworks_style = host",
        "inet_protocols = all",
        "alias_maps = inline:{ root=postmaster }",
        "smtpd_data_restrictions = reject_unauth_pipelining",
        "smtpd_reject_unlisted_recipient = yes",
        "smtpd_reject_unlisted_sender = yes",
        "smtpd_helo_required = yes",
        "smtpd_helo_restrictions = permit_mynetworks permit_sasl_authenticated "
        "reject_non_fqdn_helo_hostname reject_invalid_helo_hostname",
        "smtpd_sender_restrictions = reject_unlisted_sender permit_mynetworks "
        "permit_sasl_authenticated reject_non_fqdn_sender",
        "smtpd_recipient_restrictions = reject_unknown_recipient_domain "
        "reject_non_fqdn_recipient reject_unlisted_recipient permit_mynetworks "
        "permit_sasl_authenticated reject_unauth_destination",
        "smtpd_tls_security_level = may",
        "smtpd_tls_loglevel = 0",
        "smtpd_tls_session_cache_database = btree:/var/lib/postfix/smtpd_scache",
        "smtpd_sasl_auth_enable = yes",
        "smtpd_sasl_type = dovecot",
        "smtpd_sasl_path = private/dovecot-auth",
        "virtual_minimum_uid = 2000",
        "virtual_uid_maps = static:2000",
        "virtual_gid_maps = static:2000",
        "virtual_mailbox_base = /var/vmail",
        f"virtual_mailbox_domains = proxy:mysql:{sqldir}/virtual_mailbox_domains.cf",
        f"virtual_mailbox_maps = proxy:mysql:{sqldir}/virtual_mailbox_maps.cf",
        f"virtual_alias_maps = proxy:mysql:{sqldir}/virtual_alias_maps.cf",
        "proxy_read_maps = $canonical_maps $virtual_alias_maps $virtual_mailbox_maps",
        "virtual_transport = dovecot",
        "dovecot_destination_recipient_limit = 1",
        "content_filter = smtp-amavis:[127.0.0.1]:10024",
        "smtp-amavis_destination_recipient_limit = 1",
    ]
    master = f"""\
127.0.0.1:{port}      inet  n       -       n       -       -       smtpd
127.0.0.1:{sub_port} inet n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o content_filter=smtp-amavis:[127.0.0.1]:10026
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
dovecot unix    -       n       n       -       -      pipe
  flags=DRh user=vmail:vmail argv=/usr/lib/dovecot/deliver -f ${{sender}} -d ${{user}}@${{domain}} -m ${{extension}}
smtp-amavis unix -  -   n   -   4  smtp
  -o syslog_name=postfix/amavis
  -o smtp_data_done_timeout=1200
  -o smtp_send_xforward_command=yes
  -o disable_dns_lookups=yes
  -o max_use=20
127.0.0.1:{reinject_port} inet n    -       n       -       -     smtpd
  -o syslog_name=postfix/10025
  -o content_filter=
  -o mynetworks_style=host
  -o mynetworks=127.0.0.0/8
  -o local_recipient_maps=
  -o relay_recipient_maps=
  -o strict_rfc821_envelopes=yes
  -o smtp_tls_security_level=none
  -o smtpd_tls_security_level=none
  -o smtpd_restriction_classes=
  -o smtpd_delay_reject=no
  -o smtpd_client_restrictions=permit_mynetworks,reject
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions=
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o smtpd_end_of_data_restrictions=
  -o smtpd_error_sleep_time=0
  -o smtpd_soft_error_limit=1001
  -o smtpd_hard_error_limit=1000
  -o smtpd_client_connection_count_limit=0
  -o smtpd_client_connection_rate_limit=0
  -o receive_override_options=no_header_body_checks,no_unknown_recipient_checks,no_address_mappings
"""
    return main, master


def stack_instance(shape):
    ports = [free_port() for _ in range(3)]
    inst = Instance(ports[0])
    cert, key = make_cert(inst.root)
    main, master = shape(inst, *ports, cert, key)
    (inst.etc / "main.cf").write_text("\n".join(main) + "\n")
    (inst.etc / "master.cf").write_text(master)
    return inst, ports


def check_output(inst):
    rc, out = run_logged([str(POSTERN), "-c", str(inst.etc), "check"], 60, env=clean_env())
    assert "fatal" not in out, out
    return out


@pytest.fixture
def stack():
    made = []

    def make(shape):
        inst, ports = stack_instance(shape)
        made.append(inst)
        return inst, ports

    yield make
    for inst in made:
        print(inst.log_tail(80))
        inst.cleanup()


def test_docker_mailserver_shape(stack):
    inst, (port, sub_port, subs_port) = stack(docker_mailserver)
    out = check_output(inst)
    for line in ("service smtpd/pass (smtpd): not needed",
                 "migration: main.cf: tls_high_cipherlist"):
        assert line in out, (line, out)
    assert "policyd-spf" not in out, out   # spawn runs it
    inst.start()
    log = inst.log.read_text()
    assert "service 127.0.0.1:%d: Postfix's postscreen runs as Postern's smtpd" % port in log
    # postscreen's port takes mail for a local mailbox; the lmtp virtual
    # transport runs, but no Dovecot listens at its socket here, so virtual
    # mail stays queued.
    qid = inst.send(simple_message(subject="dms local", test_id="dms1"),
                    rcpts=["root@localhost"])
    inst.wait_delivered("root", 1)
    qid2 = inst.send(simple_message(subject="dms virtual", test_id="dms2"),
                     rcpts=["alice@dms.example"])
    wait_until(lambda: re.search(qid2 + r": to=<alice@dms.example>.*relay=none.*"
                                 r"status=deferred", inst.log.read_text()), 20,
               what="the deferral of mail for the unreachable lmtp socket")
    assert "service lmtp: Postfix's lmtp runs as Postern's remote" in inst.log.read_text()
    assert qid != qid2
    # submission answers, and refuses relaying without authentication.
    with RawSMTP(sub_port) as s:
        assert s.read_reply()[0] == 220
        assert s.cmd("EHLO client.example")[0] == 250
        assert s.cmd("MAIL FROM:<a@dms.example>")[0] in (250, 530)
    inst.stop()


def test_iredmail_shape(stack):
    inst, (port, sub_port, reinject_port) = stack(iredmail)
    out = check_output(inst)
    # Its amavis content filter and reinjection service are understood.
    for word in ("content_filter", "receive_override_options", "smtp_send_xforward_command"):
        assert f"{word} = " not in out or "does not implement" not in out.split(
            f"{word} = ", 1)[1].split("\n", 1)[0], out
    # The dovecot deliver pipe is a service Postern runs (pipe/).
    assert "service dovecot/unix (pipe)" not in out, out
    inst.start()
    # Its SQL tables (virtual_alias_maps among them) point at a MariaDB that
    # is not there: every message is refused for the time being, with the
    # reason logged, and nothing crash-loops.
    with smtplib.SMTP("127.0.0.1", port, local_hostname=HELO, timeout=30) as s:
        assert s.ehlo(HELO)[0] == 250
        assert s.mail("postmaster@mx.ired.example")[0] == 250
        assert s.rcpt("bob@mx.ired.example")[0] == 250
        code, text = s.data(b"Subject: ired\r\n\r\nhello\r\n")
        assert code == 451, (code, text)
    inst.wait_log(r"virtual_alias_maps.*(try again later|lookup|temporary)", program="cleanup")
    # The reinjection smtpd with its -o overrides answers too.
    with smtplib.SMTP("127.0.0.1", reinject_port, local_hostname=HELO, timeout=30) as s:
        assert s.ehlo(HELO)[0] == 250
        assert s.mail("a@client.example")[0] == 250
        assert s.rcpt("carol@mx.ired.example")[0] == 250
    # A domain served from SQL: a temporary refusal at RCPT, never a bounce.
    with RawSMTP(port) as s:
        assert s.read_reply()[0] == 220
        assert s.cmd("EHLO client.example")[0] == 250
        assert s.cmd("MAIL FROM:<a@client.example>")[0] == 250
        code, text = s.cmd("RCPT TO:<user@sql.example>")
        assert 400 <= code < 500, (code, text)
    assert inst.master_pids(), "master went away"
    inst.stop()
