"""Helpers for the rewriting, hosted-domain and content-check tests: lookup
tables written into an instance's etc/ (text files built into cdb: with
the real postmap, or regexp: files used as they are), a virtual mailbox
base for hosted domains, and readers for delivered messages.
"""

import os
import subprocess
from pathlib import Path

from postern_instance import BUILD, clean_env, wait_until

POSTMAP = BUILD / "bin" / "postmap"
# Hosted mailboxes belong to this uid and gid (virtual_uid_maps): a user of
# its own as root, the test's user otherwise.
ROOT = os.geteuid() == 0
VUID = 5000 if ROOT else os.getuid()
VGID = 5000 if ROOT else os.getgid()


def virtual_base(inst):
    """inst.root/vmail, made and owned by VUID:VGID (its parents readable
    by that user); returns (the directory, the main.cf lines that deliver
    hosted mailboxes under it)."""
    os.chmod(inst.root, 0o755)
    base = inst.root / "vmail"
    base.mkdir()
    os.chown(base, VUID, VGID)
    return base, [f"virtual_mailbox_base = {base}", f"virtual_uid_maps = static:{VUID}",
                  f"virtual_gid_maps = static:{VGID}",
                  *([] if ROOT else ["virtual_minimum_uid = 0"])]


def cdb_table(inst, name, lines):
    """Write etc/NAME from lines ("key value"), postmap it; returns the
    "cdb:/path" spec for main.cf."""
    path = inst.etc / name
    path.write_text("\n".join(lines) + "\n")
    subprocess.run([str(POSTMAP), "-c", str(inst.etc), str(path)], check=True, timeout=30,
                   env=clean_env(), stdin=subprocess.DEVNULL)
    return f"cdb:{path}"


def regexp_table(inst, name, lines):
    """Write etc/NAME as a regexp table; returns "regexp:/path"."""
    path = inst.etc / name
    path.write_text("\n".join(lines) + "\n")
    return f"regexp:{path}"


def maildir_new(path):
    """Files in the Maildir path's new/ (path ends at the Maildir)."""
    new = Path(path) / "new"
    try:
        return sorted(p for p in new.iterdir() if p.is_file())
    except FileNotFoundError:
        return []


def wait_maildir(path, count=1, timeout=30):
    return wait_until(lambda: (lambda f: f if len(f) >= count else None)(maildir_new(path)),
                      timeout, what=f"{count} message(s) in {path}/new")


def header_values(data, name):
    """Values of every header called name (unfolded) in a delivered file."""
    head = data.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    out, cur = [], None
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and cur is not None:
            cur += " " + line.strip()
            continue
        if cur is not None:
            out.append(cur)
        cur = line
    if cur is not None:
        out.append(cur)
    prefix = name.lower() + ":"
    return [h.split(":", 1)[1].strip() for h in out if h.lower().startswith(prefix)]


def queue_dir_files(inst, sub):
    d = inst.queue / sub
    out = []
    if d.is_dir():
        for dirpath, _dirs, files in os.walk(d):
            out.extend(Path(dirpath) / f for f in files)
    return out
