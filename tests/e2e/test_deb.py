"""The Debian package (make deb) and make install/uninstall next to dpkg,
as root, on a throwaway copy of this machine (throwaway_root.py: an overlay
over / in private mount and PID namespaces), so that installing Postern,
removing Postfix and purging change nothing on the host.

In order, each step on what the one before left: make deb builds a package
that provides, conflicts with and replaces mail-transport-agent, with the
conffiles, links and loopback-only main.cf it must have, and leaves nothing
in the repository; make install into /usr refuses the files Postfix owns and
writes nothing, make install elsewhere works and make uninstall takes back
exactly that; apt installs the package in place of Postfix without the
network (Postfix's add-ons removed first, as README says); the postinst
made the accounts and modes; the systemd unit's own commands start it,
listening on loopback only, and a message sent over SMTP on a free port is
delivered; the postfix command (status, reload, check, set-permissions,
flush, stop, start), sendmail, mailq and newaliases work; apt remove stops
it and leaves only the conffiles; dpkg --purge leaves nothing; and the
host is as it was."""

import io
import os
import shlex
import smtplib
import stat
import subprocess
import tarfile

import pytest

from postern_instance import (BUILD, MAKE_VARS, REPO, SENDER, crlf, free_port, run_logged,
                              simple_message, wait_port, wait_until)
from throwaway_root import ThrowawayRoot

pytestmark = pytest.mark.usefixtures("require_root")

RCPT = "pdebrcpt"          # a local user made in the throwaway root
LOG = "/var/log/postern.log"
# apt in the root reads no source list: it can only use what is installed
# and the .deb it is given, so it cannot reach the network.
APT_DIR = "/tmp/postern-test-apt"
APT = ["apt-get", "-q", "-y", "-o", f"Dir::Etc::SourceList={APT_DIR}/sources.list",
       "-o", f"Dir::Etc::SourceParts={APT_DIR}/sources.list.d"]

# New paths in the root that are bookkeeping of dpkg, apt and debconf, or
# that this test made itself (the recipient, its mail, the mail log).
NOISE = ("/var/lib/dpkg/", "/var/lib/apt/", "/var/cache/", "/var/log/", "/tmp/",
         "/root/", f"/home/{RCPT}", f"/var/mail/{RCPT}", "/usr/sbin/policy-rc.d",
         "/etc/.pwd.lock")


def relevant(paths):
    return {p for p in paths if not any(p == n.rstrip("/") or p.startswith(n) for n in NOISE)}


@pytest.fixture(scope="module")
def state():
    """What one step leaves for the next."""
    return {}


@pytest.fixture(scope="module")
def package():
    """make deb: (path of the .deb, repository listing before, after)."""
    def listing():
        return {p.relative_to(REPO).as_posix() for d in (REPO, REPO / "debian")
                for p in d.iterdir()}
    before = listing()
    rc, out = run_logged(["make", "-s", "deb", *MAKE_VARS], 600, cwd=str(REPO))
    assert rc == 0, out
    debs = sorted((BUILD / "deb").glob("postern_*.deb"))
    assert len(debs) == 1, (debs, out)
    return debs[0], before, listing()


def host_facts():
    """What installing, removing and purging would change on the host."""
    status = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "postfix"],
                            capture_output=True, text=True, timeout=30).stdout
    return {"postfix": status,
            "postern user": subprocess.run(["getent", "passwd", "postern"],
                                           capture_output=True, timeout=30).returncode,
            **{p: os.path.lexists(p) for p in ("/etc/postern", "/var/spool/postern",
                                               "/usr/libexec/postern", "/usr/sbin/postern")},
            "/usr/sbin/sendmail": os.path.realpath("/usr/sbin/sendmail")}


@pytest.fixture(scope="module")
def host_before():
    return host_facts()


@pytest.fixture(scope="module")
def root(host_before):
    r = ThrowawayRoot().start()
    try:
        # As in any chroot: maintainer scripts start no services, man-db
        # rebuilds no index (slow), apt has no sources.
        rc, out = r.sh("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && "
                       "chmod 755 /usr/sbin/policy-rc.d && "
                       "rm -f /var/lib/man-db/auto-update && "
                       f"mkdir -p {APT_DIR}/sources.list.d && : > {APT_DIR}/sources.list")
        assert rc == 0, out
        r.start_paths = set(r.new_paths())
        yield r
    finally:
        try:
            print("--- maillog in the root ---")
            print(r.path(LOG).read_text(errors="replace")[-6000:])
        except OSError:
            pass
        r.close()


def packages(root):
    """{package: status} of the root's dpkg database."""
    rc, out = root.run(["dpkg-query", "-W", "-f", "${Package}\\t${Status}\\n"])
    assert rc == 0, out
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def installed(pkgs):
    return {p for p, s in pkgs.items() if s == "install ok installed"}


def postfix_addons(root):
    """Installed packages that need postfix itself (a Depends clause with no
    other choice): its map types, policy servers, exporters."""
    rc, out = root.run(["dpkg-query", "-W", "-f",
                        "${Package}\\t${Status}\\t${Depends}, ${Pre-Depends}\\n"])
    assert rc == 0, out
    addons = set()
    for line in out.splitlines():
        name, status, deps = (line.split("\t") + ["", ""])[:3]
        clauses = [{alt.split()[0].split(":")[0] for alt in clause.split("|") if alt.strip()}
                   for clause in deps.split(",")]
        if status == "install ok installed" and {"postfix"} in clauses:
            addons.add(name)
    return addons


def in_root_make(root, *args):
    return root.run(["make", "-s", "-C", str(REPO), *args, *MAKE_VARS], timeout=120)


def unit_commands(root):
    """ExecStartPre=, ExecStart=, ... of the installed unit, as argv lists."""
    out = {}
    for line in root.path("/lib/systemd/system/postern.service").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("Exec"):
            out[key] = shlex.split(value)
    return out


def listeners(port):
    """Local addresses (hex, as /proc/net shows them) listening on port."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if int(hexport, 16) == port and state == "0A":
                found.add(addr)
    return found


# The enable state of postern.service that deb-systemd-helper keeps from
# remove to purge.
SYSTEMD_STATE = {
    "/etc/systemd/system/multi-user.target.wants/postern.service",
    "/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/postern.service",
    "/var/lib/systemd/deb-systemd-helper-enabled/postern.service.dsh-also",
}

LOOPBACK = {"0100007F", "00000000000000000000000001000000"}   # 127.0.0.1, ::1


def smtp_send(port, tag):
    msg = simple_message(subject=tag, test_id=tag)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.example")
        s.sendmail(SENDER, [f"{RCPT}@localhost"], crlf(msg))


def wait_delivered(root, tag, timeout=30):
    mbox = root.path(f"/var/mail/{RCPT}")

    def arrived():
        try:
            return tag.encode() in mbox.read_bytes()
        except FileNotFoundError:
            return False
    try:
        wait_until(arrived, timeout, interval=0.1, what=f"{tag} in /var/mail/{RCPT}")
    except AssertionError:
        log = root.path(LOG).read_text(errors="replace") if root.path(LOG).exists() else ""
        raise AssertionError(f"{tag} not delivered; maillog:\n{log[-4000:]}")


def postern_processes(root):
    return [(pid, argv) for pid, argv in root.processes()
            if "postern" in argv[0] or argv[0] in ("master", "smtpd", "qmgr", "pickup")]


# --- the package file ---------------------------------------------------------


def test_make_deb_builds_the_package(package):
    deb, before, after = package
    fields = {}
    for name in ("Package", "Provides", "Conflicts", "Replaces", "Depends"):
        rc, out = run_logged(["dpkg-deb", "-f", str(deb), name], 30)
        assert rc == 0, out
        fields[name] = out.strip()
    assert fields["Package"] == "postern"
    for name in ("Provides", "Conflicts", "Replaces"):
        assert fields[name] == "mail-transport-agent", fields
    assert "libevent" in fields["Depends"] and "passwd" in fields["Depends"], fields

    rc, out = run_logged(["dpkg-deb", "-I", str(deb), "conffiles"], 30)
    assert rc == 0 and out.split() == ["/etc/postern/main.cf", "/etc/postern/master.cf"], out

    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                          timeout=60, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name.lstrip("."): m for m in tar.getmembers()}
        main_cf = tar.extractfile("./etc/postern/main.cf").read().decode()
    for prog in ("/usr/sbin/sendmail", "/usr/sbin/postern", "/usr/sbin/postconf",
                 "/usr/sbin/postdrop", "/usr/sbin/postqueue", "/usr/libexec/postern/master",
                 "/usr/libexec/postern/smtpd", "/lib/systemd/system/postern.service",
                 "/usr/share/doc/postern/copyright"):
        assert members[prog].isfile(), prog
    for link, target in (("/usr/bin/mailq", "../sbin/sendmail"),
                         ("/usr/bin/newaliases", "../sbin/sendmail"),
                         ("/usr/lib/sendmail", "../sbin/sendmail"),
                         ("/usr/sbin/postfix", "postern")):
        assert members[link].issym() and members[link].linkname == target, link
    # Owners and set-id bits are the postinst's business (dpkg-statoverride).
    for m in members.values():
        assert (m.uid, m.gid) == (0, 0), m.name
        assert not m.mode & (stat.S_ISUID | stat.S_ISGID), m.name
    assert "\ninet_interfaces = loopback-only\n" in main_cf
    assert "\nqueue_directory = /var/spool/postern\n" in main_cf
    assert "\ndaemon_directory = /usr/libexec/postern\n" in main_cf
    assert not any(p.startswith("/var/spool") for p in members), "the postinst makes the queue"

    # Build products stay under BUILD/deb: the repository (and debian/) got
    # nothing new but, at most, the build tree itself.
    allowed = {BUILD.relative_to(REPO).parts[0]} if BUILD.is_relative_to(REPO) else set()
    assert after - before <= allowed, after - before


# --- make install beside dpkg ---------------------------------------------------


def test_make_install_refuses_files_a_package_owns(root):
    assert "install ok installed" == packages(root).get("postfix"), "postfix must be there"
    before = set(root.new_paths())
    rc, out = in_root_make(root, "-o", "all", "install", "PREFIX=/usr")
    assert rc != 0, out
    assert "/usr/sbin/postconf belongs to the Debian package postfix" in out, out
    assert "/usr/sbin/sendmail belongs to the Debian package postfix" in out, out
    assert "make deb" in out and "nothing was" in out, out
    assert set(root.new_paths()) == before, "make install wrote something"
    assert not root.upper("/usr/libexec/postern").exists()

    # The sendmail links the same way.
    rc, out = in_root_make(root, "install-sendmail-links", "PREFIX=/usr")
    assert rc != 0 and "/usr/bin/mailq belongs to the Debian package postfix" in out, out
    assert os.readlink(root.path("/usr/bin/mailq")) == "../sbin/sendmail"


def test_make_install_elsewhere_and_uninstall(root):
    before = set(root.new_paths())
    rc, out = in_root_make(root, "-o", "all", "install", "PREFIX=/usr/local")
    assert rc == 0, out
    for p in ("/usr/local/sbin/postern", "/usr/local/libexec/postern/master",
              "/lib/systemd/system/postern.service", "/etc/postern/main.cf"):
        assert root.path(p).exists(), p
    manifest = root.path("/usr/local/share/postern/install-manifest").read_text().split()
    assert "/usr/local/sbin/postern" in manifest and "/etc/postern/main.cf" not in manifest
    # Linking /usr/sbin/sendmail to it would overwrite Postfix's sendmail.
    rc, out = in_root_make(root, "install-sendmail-links", "PREFIX=/usr/local")
    assert rc != 0 and "/usr/sbin/sendmail belongs to the Debian package postfix" in out, out
    assert stat.S_ISREG(os.lstat(root.path("/usr/sbin/sendmail")).st_mode)

    rc, out = in_root_make(root, "uninstall", "PREFIX=/usr/local")
    assert rc == 0, out
    assert "kept the configuration /etc/postern" in out and "PURGE=1" in out, out
    left = set(root.new_paths()) - before
    assert left == {"/etc/postern", "/etc/postern/main.cf", "/etc/postern/master.cf",
                    "/var/spool/postern"}, left

    rc, out = in_root_make(root, "-o", "all", "install", "PREFIX=/usr/local")
    assert rc == 0, out
    rc, out = in_root_make(root, "uninstall", "PREFIX=/usr/local", "PURGE=1")
    assert rc == 0, out
    assert set(root.new_paths()) == before, set(root.new_paths()) ^ before


# --- the package on a host with Postfix ---------------------------------------------


def test_apt_installs_it_in_place_of_postfix(root, package, state):
    deb = package[0]
    # Postfix's add-ons go first, as README says: apt removes postfix
    # before them when another MTA replaces it, and their prerm scripts
    # need files of postfix (a Postfix packaging matter: exim4 fares the
    # same).
    addons = postfix_addons(root)
    if addons:
        rc, out = root.run([*APT, "remove", *sorted(addons)], timeout=180)
        assert rc == 0, out
    before = packages(root)
    assert "install ok installed" == before.get("postfix"), "postfix must be there"
    state["paths_before_install"] = set(root.new_paths())
    rc, out = root.run([*APT, "install", str(deb)], timeout=180)
    assert rc == 0, out
    assert "Removing postfix" in out, out
    after = packages(root)
    assert after["postern"] == "install ok installed"
    assert after["postfix"] != "install ok installed", after["postfix"]
    # Nothing else changed: whatever needed an MTA (bsd-mailx) has one.
    assert installed(after) == installed(before) - {"postfix"} | {"postern"}
    rc, out = root.run(["dpkg-query", "-S", "/usr/sbin/sendmail"])
    assert out.strip() == "postern: /usr/sbin/sendmail", out
    # What the package put there but directories (looked at in the root,
    # where its symbolic links resolve).
    rc, out = root.sh('for p in $(dpkg-query -L postern); do [ -d "$p" ] || echo "$p"; done')
    state["files"] = out.split()
    assert rc == 0 and "/usr/sbin/postern" in state["files"], out
    # Installing started nothing (no systemd here, and the postinst starts
    # nothing itself).
    assert not postern_processes(root), root.processes()
    state["installed"] = True


def test_postinst_made_accounts_modes_and_queue(root, state):
    assert state.get("installed"), "needs the install step"
    rc, out = root.run(["getent", "passwd", "postern"])
    assert rc == 0, out
    _, _, uid, gid, _, home, shell = out.strip().split(":")
    assert 0 < int(uid) < 1000 and shell == "/usr/sbin/nologin" and home == "/var/spool/postern"
    rc, out = root.run(["getent", "group", "postdrop"])
    assert rc == 0, out
    postdrop_gid = int(out.split(":")[2])
    assert postdrop_gid != int(gid)
    for prog in ("postdrop", "postqueue"):
        st = os.stat(root.path(f"/usr/sbin/{prog}"))
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o2755, 0, postdrop_gid), prog
    rc, out = root.run(["dpkg-statoverride", "--list"])
    assert "root postdrop 2755 /usr/sbin/postdrop" in out, out
    assert "root postdrop 2755 /usr/sbin/postqueue" in out, out
    for sub, mode, group in (("maildrop", 0o1730, postdrop_gid), ("public", 0o710, postdrop_gid),
                             ("incoming", 0o700, int(gid))):
        st = os.stat(root.path(f"/var/spool/postern/{sub}"))
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, int(uid), group), sub
    assert root.path("/etc/aliases.cdb").exists()
    # The conffiles, and a configuration that listens on loopback only.
    rc, out = root.run(["dpkg-query", "-W", "-f", "${Conffiles}\\n", "postern"])
    assert "/etc/postern/main.cf" in out and "/etc/postern/master.cf" in out, out
    rc, out = root.run(["postconf", "-h", "inet_interfaces"])
    assert (rc, out.strip()) == (0, "loopback-only"), out
    # Nothing left for postern check to do.
    rc, out = root.run(["postern", "check"])
    assert rc == 0 and "created" not in out and "fixed" not in out, out


def test_unit_commands_start_it_and_mail_is_delivered(root, state):
    assert state.get("installed"), "needs the install step"
    port = free_port()
    state["port"] = port
    # The administrator's part: a port (never 25 here) and a log file.
    master_cf = root.path("/etc/postern/master.cf")
    lines = [str(port) + line[len("smtp"):] if line.split()[:2] == ["smtp", "inet"] else line
             for line in master_cf.read_text().splitlines()]
    master_cf.write_text("\n".join(lines) + "\n")
    rc, out = root.run(["postconf", "-e", f"maillog_file = {LOG}"])
    assert rc == 0, out
    rc, out = root.run(["useradd", "--create-home", "--shell", "/bin/sh", RCPT])
    assert rc == 0, out

    unit = unit_commands(root)
    assert unit["ExecStartPre"] == ["/usr/sbin/postern", "check"], unit
    assert unit["ExecStart"] == ["/usr/sbin/postern", "start"], unit
    for key in ("ExecStartPre", "ExecStart"):
        rc, out = root.run(unit[key])
        assert rc == 0, (key, out)
    wait_port(port)
    # inet_interfaces = loopback-only: 127.0.0.1 (and ::1), never a wildcard.
    addrs = listeners(port)
    assert addrs and addrs <= LOOPBACK, addrs

    smtp_send(port, "deb-smtp-1")
    wait_delivered(root, "deb-smtp-1")
    log = root.path(LOG).read_text()
    assert f"to=<{RCPT}@localhost>, relay=local" in log and "status=sent" in log, log[-3000:]
    state["started"] = True


def test_postfix_command_and_mta_names(root, state):
    assert state.get("started"), "needs the start step"
    rc, out = root.run(["postfix", "status"])
    assert rc == 0 and "is running" in out, out
    pid = out.split("PID:")[1].split()[0]
    rc, out = root.run(["postfix", "reload"])
    assert rc == 0 and "refreshing" in out, out
    wait_until(lambda: "reload -- version" in root.path(LOG).read_text(), 15,
               what="master's reload log line")
    rc, out = root.run(["postfix", "status"])
    assert rc == 0 and f"PID: {pid}" in out, out
    smtp_send(state["port"], "deb-smtp-2")
    wait_delivered(root, "deb-smtp-2")
    for cmd in (["postfix", "check"], ["postfix", "set-permissions"], ["postfix", "flush"],
                ["newaliases"]):
        rc, out = root.run(cmd)
        assert rc == 0, (cmd, out)

    # Local submission through the names every Debian MTA has.
    rc, out = root.sh(f"printf 'To: {RCPT}@localhost\\nSubject: deb-sendmail\\n\\nhi\\n' | "
                      f"/usr/lib/sendmail -t")
    assert rc == 0, out
    wait_delivered(root, "deb-sendmail")
    rc, out = root.run(["mailq"])
    assert rc == 0, out
    wait_until(lambda: "Mail queue is empty" in root.run(["mailq"])[1], 15,
               what="an empty queue")

    rc, out = root.run(["postfix", "stop"])
    assert rc == 0 and not postern_processes(root), (out, postern_processes(root))
    rc, out = root.run(["postfix", "start"])
    assert rc == 0, out
    wait_port(state["port"])
    smtp_send(state["port"], "deb-smtp-3")
    wait_delivered(root, "deb-smtp-3")


def test_apt_remove_stops_it_and_keeps_only_conffiles(root, state):
    assert state.get("started"), "needs the start step"
    assert postern_processes(root), "Postern should be running before the removal"
    before = packages(root)
    rc, out = root.run(["dpkg-query", "-W", "-f", "${Package}\\t${Depends}\\n"])
    needs_mta = {line.split("\t")[0] for line in out.splitlines()
                 if "mail-transport-agent" in line.partition("\t")[2]}
    rc, out = root.run([*APT, "remove", "postern"], timeout=180)
    assert rc == 0, out
    after = packages(root)
    assert after["postern"] == "deinstall ok config-files", after["postern"]
    # apt takes what depends on an MTA with it, and nothing else.
    gone = installed(before) - installed(after)
    assert "postern" in gone and gone - {"postern"} <= needs_mta, gone
    # The prerm stopped the mail system (there is no systemd to do it).
    assert not postern_processes(root), postern_processes(root)

    conffiles = {"/etc/postern/main.cf", "/etc/postern/master.cf"}
    rc, out = root.sh("for p in " + " ".join(state["files"]) +
                      '; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done')
    assert set(out.split()) == conffiles, out
    new = relevant(set(root.new_paths()) - state["paths_before_install"])
    # debhelper keeps the unit's enable state until purge, as for every
    # Debian service.
    assert {"/etc/postern"} | conffiles <= new <= {"/etc/postern"} | conffiles | SYSTEMD_STATE, new
    state["removed"] = True


def test_purge_leaves_nothing(root, state):
    assert state.get("removed"), "needs the remove step"
    rc, out = root.run(["dpkg", "--purge", "postern"], timeout=120)
    assert rc == 0, out
    assert "postern" not in installed(packages(root))
    rc, out = root.run(["dpkg-query", "-W", "-f", "${Status}", "postern"])
    assert "not-installed" in out or rc != 0, out
    new = relevant(set(root.new_paths()) - state["paths_before_install"])
    assert not new, new
    leftovers = [p for p in os.listdir(root.path("/var/lib/dpkg/info")) if p.startswith("postern.")]
    assert not leftovers, leftovers
    rc, out = root.run(["dpkg-statoverride", "--list"])
    assert "/usr/sbin/postdrop" not in out and "/usr/sbin/postqueue" not in out, out
    rc, out = root.run(["getent", "passwd", "postern"])
    assert rc == 2, out
    assert not root.path("/var/spool/postern").exists()
    assert not root.path("/etc/postern").exists()


def test_the_host_is_untouched(root, host_before):
    # Postfix went in the root only; the host has it as before, and none
    # of what the package or make install made.
    assert packages(root).get("postfix") != "install ok installed"
    assert host_facts() == host_before
