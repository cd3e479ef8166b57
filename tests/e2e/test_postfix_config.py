"""test_postfix_config.py - a Postfix host's own configuration runs unchanged
(issue 15).

The files come from the installed Debian postfix package itself: its stock
master.cf (/usr/share/postfix/master.cf.dist) and the main.cf that Debian's
installer writes for an "Internet Site" (main.cf.debian, main.cf.tls, then
the lines dpkg-reconfigure adds). Only ports and paths move into the test
directory. Postern must load them, report once what it does another way or
lacks (services and parameters), deliver mail, keep mail for a service it
lacks in the queue, and read myorigin from the file Debian names.
"""
import getpass
import re
from pathlib import Path

from postern_instance import (LIBEXEC, Instance, POSTERN, clean_env, free_port, run_logged,
                              simple_message, wait_until)
from sendmail_helpers import run_sendmail
from smtpd_fixture import make_cert

DEBIAN = Path("/usr/share/postfix")
MAILNAME = "mailname.example"


def debian_master_cf(port):
    """The stock master.cf, its smtp inet service moved to a test port."""
    text = (DEBIAN / "master.cf.dist").read_text()
    text, n = re.subn(r"^smtp(\s+)inet", f"127.0.0.1:{port}\\1inet", text, count=1,
                      flags=re.M)
    assert n == 1, "the stock master.cf has no smtp inet service"
    return text


def internet_site_main_cf(inst, cert, key):
    """main.cf.debian + main.cf.tls + what dpkg-reconfigure writes for an
    Internet Site, with paths moved into the instance."""
    (inst.root / "mailname").write_text(MAILNAME + "\n")
    aliases = inst.root / "aliases"
    aliases.write_text("postmaster: root\n")
    text = (DEBIAN / "main.cf.debian").read_text() + (DEBIAN / "main.cf.tls").read_text()
    text = text.replace("/etc/ssl/certs/ssl-cert-snakeoil.pem", str(cert))
    text = text.replace("/etc/ssl/private/ssl-cert-snakeoil.key", str(key))
    site = [
        "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated "
        "defer_unauth_destination",
        "myhostname = deb.example",
        f"alias_maps = hash:{aliases}",
        f"alias_database = hash:{aliases}",
        f"myorigin = {inst.root / 'mailname'}",
        "mydestination = $myhostname, deb.example, localhost.example, , localhost",
        "relayhost =",
        "mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128",
        "mailbox_size_limit = 0",
        "recipient_delimiter = +",
        "inet_interfaces = all",
        "inet_protocols = all",
        # Paths of the instance (Debian's are /var/spool/postfix and so on).
        f"queue_directory = {inst.queue}",
        f"mail_spool_directory = {inst.mail}",
        f"maillog_file = {inst.log}",
        f"daemon_directory = {LIBEXEC}",
        f"command_directory = {POSTERN.parent}",
        f"mail_owner = {getpass.getuser()}",
        "dns_servers = 127.0.0.1:9",
    ]
    return text + "\n" + "\n".join(site) + "\n"


def debian_instance(tmp_path):
    port = free_port()
    inst = Instance(port, master_cf=debian_master_cf(port))
    cert, key = make_cert(inst.root)
    (inst.etc / "main.cf").write_text(internet_site_main_cf(inst, cert, key))
    # As Debian's installer runs newaliases: local reads the table.
    rc, out = run_logged([str(POSTERN.parent / "postalias"), "-c", str(inst.etc)], 30,
                         env=clean_env())
    assert rc == 0, out
    return inst


def test_check_reports_what_postern_does_another_way_or_lacks(tmp_path):
    inst = debian_instance(tmp_path)
    try:
        rc, out = run_logged([str(POSTERN), "-c", str(inst.etc), "check"], 60,
                             env=clean_env())
        assert "fatal" not in out, out
        # Parameters: covered another way, ignored, never "unused" (a typo).
        assert "migration: main.cf: biff = no: not needed" in out, out
        assert "migration: main.cf: readme_directory = no: not needed" in out, out
        # Every other stock parameter is implemented (smtp_tls_CApath since
        # issue 20), so the report does not name it.
        assert "smtp_tls_CApath" not in out, out
        assert "unused parameter" not in out, out
        # Services: every line of the stock file is accounted for.
        for line in ("service tlsmgr/unix (tlsmgr): not needed",
                     "service rewrite/unix (trivial-rewrite): not needed",
                     "service postlog/unix-dgram (postlogd): not needed",
                     "service verify/unix (verify): not available yet"):
            assert line in out, (line, out)
        # The pipe services are Postern's (pipe/); in an instance their
        # user= does not matter, so they are all fine.
        assert "(pipe)" not in out, out
        assert "cannot run" not in out, out
        # lmtp is Postern's remote under that name: nothing to report.
        assert "(lmtp):" not in out, out
    finally:
        inst.cleanup()


def test_debian_stock_configuration_delivers(tmp_path):
    inst = debian_instance(tmp_path)
    try:
        inst.start()
        log = inst.log.read_text()
        # Reported once each at start, not a crash loop.
        assert log.count("service tlsmgr/unix (tlsmgr): not needed") == 1, log
        assert log.count("service postlog/unix-dgram (postlogd): not needed") == 1, log
        assert re.search(r"service smtp: Postfix's smtp runs as Postern's remote", log), log
        assert re.search(r"service lmtp: Postfix's lmtp runs as Postern's remote", log), log
        assert re.search(r"service qmgr: Postern's qmgr is woken through a fifo", log), log
        assert "biff=no: not needed" in log, log

        qid = inst.send(simple_message(subject="stock config", test_id="stock"),
                        rcpts=["alice@deb.example"])
        inst.wait_delivered("alice", 1)
        assert re.search(qid + r": to=<alice@deb.example>.*status=sent", inst.log.read_text())

        # myorigin = /etc/mailname: the file's domain, not the path.
        r = run_sendmail(inst, ["-t", "-i"],
                         b"From: root\nTo: bob@deb.example\nSubject: origin\n\nbody\n")
        assert r.returncode == 0, r.stderr
        inst.wait_delivered("bob", 1)
        mail = next((inst.mail / "bob" / "new").iterdir()).read_bytes()
        assert b"From: root@" + MAILNAME.encode() in mail, mail[:400]
        assert b"/mailname" not in mail
        inst.stop()
    finally:
        inst.cleanup()


def test_mail_for_a_missing_service_stays_queued(tmp_path):
    """transport_maps routing to the stock maildrop (pipe) service, whose
    command this host lacks (/usr/bin/maildrop): deferred, never lost."""
    inst = debian_instance(tmp_path)
    try:
        inst.append_main_cf(f"transport_maps = inline:{{ pipe.example=maildrop: }}",
                            "relay_domains = pipe.example")
        inst.start()
        qid = inst.send(simple_message(subject="to pipe", test_id="pipe"),
                        rcpts=["user@pipe.example"])
        wait_until(lambda: re.search(qid + r": to=<user@pipe.example>.*status=deferred",
                                     inst.log.read_text()), 20,
                   what="the deferral of mail for the missing maildrop command")
        assert re.search(qid + r": to=<user@pipe.example>, relay=maildrop, .*dsn=4\.3\.0, "
                         r"status=deferred \(cannot run command: /usr/bin/maildrop: ",
                         inst.log.read_text()), inst.log_tail()
        assert inst.queue_files(), "the message left the queue"
        inst.stop()
    finally:
        inst.cleanup()
