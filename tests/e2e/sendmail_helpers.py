"""Helpers for the local-submission tests (sendmail, postdrop, pickup):
running the real build/bin/sendmail against an instance, instances whose
master.cf leaves mail where the test can look at it, and the maildrop
directory. Every run has a deadline.
"""

import os
import subprocess
from pathlib import Path

from postern_instance import BUILD, clean_env, wait_until

SENDMAIL = BUILD / "bin" / "sendmail"
POSTDROP = BUILD / "bin" / "postdrop"

# EX_* values of sysexits.h that the tests expect.
EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_TEMPFAIL, EX_NOPERM = 64, 65, 69, 75, 77


def sendmail_env(inst, **extra):
    env = clean_env()
    env["MAIL_CONFIG"] = str(inst.etc)
    env.update(extra)
    return env


def run_sendmail(inst, args, message=b"", sendmail=SENDMAIL, timeout=20, user=None, **env):
    """Run sendmail ARGS with message on standard input; returns the
    CompletedProcess (stdout and stderr captured). user: (uid, gid) to run
    as, with no supplementary groups."""
    if isinstance(message, str):
        message = message.encode("utf-8")
    kwargs = {}
    if user is not None:
        kwargs = {"user": user[0], "group": user[1], "extra_groups": []}
    return subprocess.run([str(sendmail), *args], input=message, capture_output=True,
                          env=sendmail_env(inst, **env), timeout=timeout, **kwargs)


def master_cf_without_qmgr(port):
    """smtpd, cleanup and pickup but no qmgr: queue files stay in incoming/."""
    return (f"127.0.0.1:{port} inet n - n - - smtpd\n"
            "cleanup unix - - n - 0 cleanup\n"
            "pickup fifo n - n 60 1 pickup\n")


def start_without_qmgr(make_instance):
    inst = make_instance(start=False)
    inst.write_master_cf(master_cf_without_qmgr(inst.port))
    inst.start()
    return inst


def maildrop_files(inst):
    d = inst.queue / "maildrop"
    return sorted(p for p in d.iterdir() if not p.name.startswith("tmp."))


def complete_incoming(inst, timeout=15):
    """Wait for one complete (mode 0700) queue file in incoming/."""
    def mode(p):
        try:
            return p.stat().st_mode & 0o777
        except FileNotFoundError:   # cleanup's temporary name, just linked away
            return None

    def one():
        d = inst.queue / "incoming"
        done = [p for p in d.iterdir() if mode(p) == 0o700]
        return done[0] if len(done) == 1 else None
    return wait_until(one, timeout, what="one complete file in incoming/")


def body_of(path):
    data = Path(path).read_bytes()
    return data.partition(b"\n\n")[2]


def header_values(data, name):
    """Unfolded values of every header called name in a delivered message."""
    head = data.partition(b"\n\n")[0].decode("utf-8", "replace")
    out, current = [], None
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and current is not None:
            out[-1] += " " + line.strip()
            continue
        current = None
        key, sep, value = line.partition(":")
        if sep and key.lower() == name.lower():
            out.append(value.strip())
            current = key
    return out


def exists_as(path, uid):
    try:
        return os.stat(path).st_uid == uid
    except FileNotFoundError:
        return False
