"""spawn (issue 19): a master.cf service that runs a command per
connection with the connection as its standard input and output, as
Postfix's spawn(8) runs policyd-spf. The command here is a small policy
server script; smtpd reaches it as check_policy_service private/NAME.
Asserted: the command runs as user=, answers through the socket, a
second request on a new connection runs it again, and one still running
at <service>_time_limit is killed with a warning while smtpd gives the
default action."""

import os
import pwd
import re
import shutil
import stat
import tempfile

import pytest

from postern_instance import HELO, SENDER, RawSMTP, crlf, simple_message
from smtpd_fixture import master_cf

SCRIPT = r"""#!/usr/bin/python3
import os, sys, time
while True:
    attrs = {}
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            break
        k, _, v = line.partition("=")
        attrs[k] = v
    else:
        sys.exit(0)
    if attrs.get("recipient") == "slow@localhost":
        time.sleep(60)
    if attrs.get("recipient") == "bob@localhost":
        sys.stdout.write(f"action=REJECT uid={os.getuid()} pid={os.getpid()}\n\n")
    else:
        sys.stdout.write("action=DUNNO\n\n")
    sys.stdout.flush()
"""


@pytest.fixture
def script_dir():
    d = tempfile.mkdtemp(prefix="spawn-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "policy.py")
    with open(path, "w") as f:
        f.write(SCRIPT)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(d, ignore_errors=True)


def rcpt(inst, rcpt_to):
    with RawSMTP(inst.port) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        reply = c.cmd(f"RCPT TO:<{rcpt_to}>")
        assert c.cmd("QUIT")[0] == 221
        return reply


def test_spawn_runs_policy_script(make_instance, script_dir, require_root):
    inst = make_instance(start=False)
    inst.write_master_cf(master_cf(inst.port) +
                         f"policy unix - n n - 0 spawn user=nobody argv={script_dir}\n")
    inst.append_main_cf(
        "smtpd_recipient_restrictions = check_policy_service private/policy, "
        "reject_unauth_destination",
        "smtpd_policy_service_timeout = 1s", "smtpd_policy_service_try_limit = 1",
        "smtpd_policy_service_max_idle = 1s",
        "policy_time_limit = 2s")
    inst.start()
    nobody = pwd.getpwnam("nobody").pw_uid
    code, lines = rcpt(inst, "bob@localhost")
    assert code == 554
    assert lines[0].startswith(f"5.7.1 <bob@localhost>: Recipient address rejected: "
                               f"uid={nobody} pid="), lines
    assert rcpt(inst, "alice@localhost") == (250, ["2.1.5 Ok"])
    # A command that outlives the time limit is killed; smtpd, which gave
    # up after its own timeout, answers the default action.
    assert rcpt(inst, "slow@localhost") == (
        451, ["4.3.5 <slow@localhost>: Recipient address rejected: Server configuration "
              "problem"])
    inst.wait_log(rf"^warning: command {script_dir}: time limit of 2 s exceeded; killed$",
                  program="spawn", timeout=15)
    assert not inst.find_log(r"not started|fatal", program="master")


# The installed policyd-spf, with dnspython's default resolver pointed at
# the test's dnsmasq (resolv.conf cannot name a port, and policyd-spf has
# no resolver option); everything else is policyd-spf's own code.
SPF_RESOLVER = r"""import sys
import dns.resolver
conf, port = sys.argv[1], int(sys.argv[2])
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = ["127.0.0.1"]
resolver.port = port
resolver.lifetime = 5
dns.resolver.default_resolver = resolver
sys.argv = ["policyd-spf", conf]
from spf_engine.policyd_spf import main
sys.exit(main())
"""

SPF_CONF = """debugLevel = 1
TestOnly = 1
HELO_reject = Fail
Mail_From_reject = Fail
PermError_reject = False
TempError_Defer = False
skip_addresses = 192.0.2.0/24
"""


def test_policyd_spf_through_spawn(make_instance, require_root):
    from dnsmasq_fixture import DnsServer
    d = tempfile.mkdtemp(prefix="spf-")
    dns = DnsServer(txt=[("pass.test", "v=spf1 ip4:127.0.0.1 -all"),
                         ("fail.test", "v=spf1 ip4:192.0.2.1 -all")])
    try:
        os.chmod(d, 0o755)
        for name, text in (("resolver.py", SPF_RESOLVER), ("policyd-spf.conf", SPF_CONF)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(d, name), 0o644)
        dns.start()
        inst = make_instance(start=False)
        inst.write_master_cf(
            master_cf(inst.port) +
            "policyd-spf unix - n n - 0 spawn user=nobody argv=/usr/bin/python3 "
            f"{d}/resolver.py {d}/policyd-spf.conf {dns.port}\n")
        inst.append_main_cf(
            "smtpd_recipient_restrictions = reject_unauth_destination, "
            "check_policy_service unix:private/policyd-spf")
        inst.start()

        def attempt(sender):
            with RawSMTP(inst.port) as c:
                assert c.read_reply()[0] == 220
                assert c.cmd("EHLO client.test")[0] == 250
                assert c.cmd(f"MAIL FROM:<{sender}>")[0] == 250
                reply = c.cmd("RCPT TO:<alice@localhost>")
                if reply[0] == 250:
                    assert c.cmd("DATA")[0] == 354
                    c.send(crlf(simple_message("spf")) + b".\r\n")
                    assert c.read_reply()[0] == 250
                c.cmd("QUIT")
                return reply

        code, lines = attempt("someone@fail.test")
        assert code == 550, lines
        assert lines[0].startswith("5.7.23 <alice@localhost>: Recipient address rejected: "
                                   "Message rejected due to: SPF fail - not authorized."), lines
        # SPF pass: the message carries policyd-spf's Received-SPF header.
        assert attempt("someone@pass.test") == (250, ["2.1.5 Ok"])
        data = inst.wait_delivered("alice")[0].read_bytes().decode()
        assert re.search(r"(?m)^Received-SPF: Pass \(mailfrom\) identity=mailfrom; "
                         r"client-ip=127\.0\.0\.1; helo=client\.test; "
                         r"envelope-from=someone@pass\.test", data), data
    finally:
        dns.close()
        shutil.rmtree(d, ignore_errors=True)
