"""test_instance_host.py - an instance is a whole host inside its own
directory (issue 15): newaliases and every default path stay inside it.
"""
import os
import subprocess
from pathlib import Path

from postern_instance import BUILD, clean_env
from sendmail_helpers import run_sendmail

POSTCONF = BUILD / "bin" / "postconf"

SYSTEM_ALIASES_DB = Path("/etc/aliases.cdb")


def stat_or_none(path):
    try:
        st = path.stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        return None


def test_newaliases_in_an_instance_touches_nothing_outside(make_instance):
    # main.cf names no alias table: the default must be the instance's own.
    inst = make_instance(start=False)
    (inst.etc / "aliases").write_text("postmaster: root\nteam: alice, bob\n")
    before = stat_or_none(SYSTEM_ALIASES_DB)
    r = run_sendmail(inst, ["-bi"])
    assert r.returncode == 0, r.stderr
    assert (inst.etc / "aliases.cdb").is_file(), os.listdir(inst.etc)
    assert stat_or_none(SYSTEM_ALIASES_DB) == before, "newaliases wrote /etc/aliases.cdb"
    # postconf shows the same default.
    out = subprocess.run([str(POSTCONF), "-c", str(inst.etc), "-h", "alias_database"],
                         capture_output=True, text=True, timeout=30, env=clean_env())
    assert out.stdout.strip() == f"cdb:{inst.etc}/aliases", out
