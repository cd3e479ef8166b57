"""postconf: every parameter, one by name, -n (what main.cf sets), -d (the
built-in defaults), -h, -x, -e (edit in place, comments kept, a running
instance picks the edit up on reload), -X, and -M (master.cf services)."""

import socket

from postern_instance import BUILD, HOSTNAME, RawSMTP, run_logged, clean_env, wait_until

POSTCONF = BUILD / "bin" / "postconf"


def postconf(inst, *args):
    rc, out = run_logged([str(POSTCONF), "-c", str(inst.etc), *args], 15, env=clean_env())
    return rc, out


def as_dict(out):
    d = {}
    for line in out.splitlines():
        if " = " in line:
            k, v = line.split(" = ", 1)
            d[k] = v
        elif line.endswith(" ="):
            d[line[:-2]] = ""
    return d


def test_all_and_by_name(make_instance):
    inst = make_instance(start=False)
    rc, out = postconf(inst)
    assert rc == 0, out
    params = as_dict(out)
    # Every known parameter, sorted, set ones with main.cf's (raw) value.
    assert len(params) > 40, out
    names = [l.split(" =")[0] for l in out.splitlines()]
    assert names == sorted(names), names
    assert params["myhostname"] == HOSTNAME
    assert params["mydestination"] == "localhost, $myhostname"
    assert params["message_size_limit"] == "10240000"
    rc, out = postconf(inst, "mydestination", "mail_name")
    assert rc == 0 and out.splitlines() == [
        "mydestination = localhost, $myhostname", "mail_name = Postern"], out
    rc, out = postconf(inst, "-x", "mydestination")
    assert out.splitlines() == [f"mydestination = localhost, {HOSTNAME}"], out
    rc, out = postconf(inst, "-h", "myhostname")
    assert out.splitlines() == [HOSTNAME], out
    rc, out = postconf(inst, "no_such_parameter")
    assert "no_such_parameter: unknown parameter" in out, out


def test_n_lists_exactly_main_cf(make_instance):
    inst = make_instance(start=False, extra_main=["relayhost = [mail.example.net]:587"])
    rc, out = postconf(inst, "-n")
    assert rc == 0, out
    got = as_dict(out)
    want = {}
    for line in (inst.etc / "main.cf").read_text().splitlines():
        k, v = line.split(" = ", 1)
        want[k] = v
    assert got == want


def test_d_shows_defaults_not_main_cf(make_instance):
    inst = make_instance(start=False)
    rc, out = postconf(inst, "-d", "myhostname", "mail_owner", "mydestination")
    assert rc == 0, out
    assert out.splitlines() == [
        f"myhostname = {socket.gethostname()}",
        "mail_owner = postern",
        "mydestination = $myhostname, localhost.$mydomain, localhost",
    ], out
    rc, out = postconf(inst, "-d")
    assert as_dict(out)["message_size_limit"] == "10240000"


def test_e_round_trip_keeps_comments(make_instance):
    inst = make_instance(start=False)
    original = (inst.etc / "main.cf").read_text()
    (inst.etc / "main.cf").write_text(
        "# top comment\n" + original +
        "smtpd_banner = $myhostname ESMTP\n    old continuation\n"
        "# trailing comment\n")
    rc, out = postconf(inst, "-e", "smtpd_banner = $myhostname ESMTP edited",
                       "relayhost=[relay.example]:2525")
    assert rc == 0, out
    text = (inst.etc / "main.cf").read_text()
    assert text.startswith("# top comment\n") and text.endswith(
        "relayhost = [relay.example]:2525\n"), text
    assert "# trailing comment\n" in text
    assert "old continuation" not in text
    assert text.count("smtpd_banner") == 1
    for line in original.splitlines():
        assert line in text.splitlines(), line
    rc, out = postconf(inst, "-n", "smtpd_banner", "relayhost")
    assert out.splitlines() == ["smtpd_banner = $myhostname ESMTP edited",
                                "relayhost = [relay.example]:2525"], out
    rc, out = postconf(inst, "-X", "relayhost")
    assert rc == 0, out
    rc, out = postconf(inst, "-n")
    assert "relayhost" not in as_dict(out)
    assert "# trailing comment" in (inst.etc / "main.cf").read_text()


def test_e_then_reload_changes_the_running_system(make_instance):
    inst = make_instance()
    rc, out = postconf(inst, "-e", "smtpd_banner=$myhostname ESMTP via postconf")
    assert rc == 0, out
    rc, out = inst.postern("reload")
    assert rc == 0, out

    def banner():
        with RawSMTP(inst.port, timeout=10) as c:
            code, texts = c.read_reply()
            c.cmd("QUIT")
            return texts[0]

    wait_until(lambda: banner() == f"{HOSTNAME} ESMTP via postconf", 15, interval=0.3,
               what="the banner set with postconf -e")


def test_M_prints_master_cf(make_instance):
    inst = make_instance(start=False, master_cf=(
        "# comment\n"
        "2525 inet n - n - - smtpd\n"
        "  -o smtpd_banner=x\n"
        "cleanup unix - - n - 0 cleanup\n"
        "qmgr fifo n - n 300 1 qmgr\n"))
    rc, out = postconf(inst, "-M")
    assert rc == 0, out
    rows = [l.split() for l in out.splitlines()]
    assert rows == [
        ["2525", "inet", "n", "y", "n", "-", "-", "smtpd", "-o", "smtpd_banner=x"],
        ["cleanup", "unix", "y", "y", "n", "-", "0", "cleanup"],
        ["qmgr", "fifo", "n", "y", "n", "300", "1", "qmgr"],
    ], out
    rc, out = postconf(inst, "-M", "qmgr/fifo")
    assert [l.split()[0] for l in out.splitlines()] == ["qmgr"], out
    rc, out = postconf(inst, "-M", "qmgr/unix")
    assert out.strip() == "", out
