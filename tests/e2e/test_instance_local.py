"""Local delivery in instance mode is a whole host's (issue 15): the
instance's own aliases ($config_directory/aliases, built by postern start)
to another local part, a list, a |command, a /file and an :include: list;
recipient_delimiter extensions; a .forward in the instance's home of a local
part (mail_spool_directory/NAME/.forward); local_recipient_maps when main.cf
sets it. Every local part is still a Maildir of that name when nothing says
otherwise, and everything runs as the instance user.
"""

import mailbox
import os
import re
import smtplib

import pytest

from postern_instance import HOSTNAME, SENDER, simple_message, split_message


def header(data, name):
    headers, _ = split_message(data)
    return [h.split(b":", 1)[1].strip().decode() for h in headers
            if h.split(b":", 1)[0].decode().lower() == name.lower()]


@pytest.fixture
def host(make_instance):
    inst = make_instance(start=False)
    out = inst.root / "out"
    out.mkdir()
    (inst.root / "club.list").write_text("# the club\ndave\nerin@localhost\n")
    (inst.etc / "aliases").write_text(
        "postmaster: alice\n"
        "team: alice, bob, carol\n"
        f'robot: "|cat > {out}/robot.msg; env > {out}/robot.env"\n'
        f"archive: {inst.root}/archive.mbox\n"
        f"club: :include:{inst.root}/club.list\n")
    inst.append_main_cf("recipient_delimiter = +")
    inst.start()
    return inst


def test_the_instance_alias_table_is_built_at_start(host):
    assert (host.etc / "aliases.cdb").is_file()
    assert host.find_log(r"built the instance's alias table cdb:")


def test_alias_to_another_local_part_and_a_list(host):
    qid = host.send(simple_message("list"), ["team@localhost", "postmaster@localhost"])
    for user in ("bob", "carol"):
        host.wait_delivered(user)
    # alice is both a member of team and postmaster: one copy per
    # recipient of the message, each logged under its own address.
    host.wait_delivered("alice", 2)
    log = [l.text for l in host.find_log(rf"{qid}: to=", program="local")]
    assert any(re.search(rf"to=<bob@{re.escape(HOSTNAME)}>, orig_to=<team@localhost>, "
                         r"relay=local, .*status=sent \(delivered to maildir\)", t) for t in log), log
    assert any(f"to=<alice@{HOSTNAME}>, orig_to=<postmaster@localhost>" in t for t in log), log
    assert not (host.mail / "team").exists() and not (host.mail / "postmaster").exists()
    [bob] = host.delivered("bob")
    data = bob.read_bytes()
    assert header(data, "X-Original-To") == ["team@localhost"]
    assert header(data, "Delivered-To") == ["team@localhost"]


def test_alias_to_a_command_a_file_and_an_include_list(host):
    out = host.root / "out"
    host.send(simple_message("robot", body="for the robot\n"), ["robot@localhost"])
    host.wait_log(r"to=<robot@localhost>, .*status=sent \(delivered to command: ", program="local")
    msg = (out / "robot.msg").read_bytes()
    assert msg.startswith(f"From {SENDER} ".encode()), msg[:100]
    assert b"\nDelivered-To: robot@localhost\n" in msg and msg.endswith(b"for the robot\n")
    env = dict(line.split("=", 1) for line in (out / "robot.env").read_text().splitlines()
               if "=" in line)
    assert env["RECIPIENT"] == "robot@localhost" and env["SENDER"] == SENDER
    host.send(simple_message("archive", body="to the archive\n"), ["archive@localhost"])
    host.wait_log(r"to=<archive@localhost>, .*status=sent \(delivered to file: ",
                  program="local")
    box = mailbox.mbox(str(host.root / "archive.mbox"))
    [m] = list(box)
    assert m["Subject"] == "archive" and m.get_payload() == "to the archive\n"
    assert (host.root / "archive.mbox").stat().st_uid == os.getuid()
    host.send(simple_message("club"), ["club@localhost"])
    host.wait_delivered("dave")
    host.wait_delivered("erin")
    assert not (host.mail / "club").exists()


def test_extension_goes_to_the_user_with_its_delivered_to(host):
    host.send(simple_message("ext"), ["bob+ext@localhost", "team+x@localhost"])
    files = host.wait_delivered("bob", 2)
    delivered_to = sorted(header(f.read_bytes(), "Delivered-To")[0] for f in files)
    assert delivered_to == ["bob+ext@localhost", "team+x@localhost"]
    assert not (host.mail / "bob+ext").exists()
    host.wait_delivered("alice")
    host.wait_delivered("carol")


def test_dot_forward_in_the_instance_home(host):
    home = host.mail / "frank"
    home.mkdir()
    (home / ".forward").write_text("# keep a copy, and one for gina\n\\frank, gina\n")
    host.send(simple_message("forwarded"), ["frank@localhost"])
    [mine] = host.wait_delivered("frank")
    host.wait_delivered("gina")
    assert header(mine.read_bytes(), "Delivered-To") == ["frank@localhost"]
    # local logs a delivery after its mailbox write: wait for both lines.
    host.wait_log(r"to=<(frank|gina)@", program="local", count=2)
    log = [l.text for l in host.find_log(r"to=<(frank|gina)@", program="local")]
    assert any(f"to=<gina@{HOSTNAME}>, orig_to=<frank@localhost>" in t for t in log), log


def test_every_local_part_is_a_mailbox_unless_local_recipient_maps_says(make_instance):
    inst = make_instance(extra_main=["local_recipient_maps = inline:{ alice=1 }"])
    inst.send(simple_message("known"), ["alice@localhost"])
    inst.wait_delivered("alice")
    with inst.smtp() as s:
        s.ehlo("client.example")
        s.mail(SENDER)
        code, text = s.rcpt("zed@localhost")
        assert code == 550 and b"User unknown in local recipient table" in text, (code, text)
    # Without it (the instance default), anybody, root too, is a mailbox.
    other = make_instance()
    other.send(simple_message("root"), ["root@localhost", "zed@localhost"])
    other.wait_delivered("root")
    other.wait_delivered("zed")
