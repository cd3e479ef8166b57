"""A throwaway copy of this machine for tests that install and remove
Debian packages (test_deb.py): an overlayfs whose lower layer is the host's
own / and whose upper layer is a tmpfs, in a private mount namespace and
PID namespace, entered with nsenter and chroot. apt, dpkg, maintainer
scripts and daemons run there change only the upper layer: the host's files,
package database, accounts and processes stay exactly as they were. The
network is the host's, so a listener in the root is reachable from the test
on 127.0.0.1 (tests use a free port).

The namespace is held by its first process, a reaper that is PID 1 there.
close() kills it, which makes the kernel kill every process in the
namespace and drop every mount with it, whatever state a test left. If the
test process itself dies, its death signal kills unshare, whose
--kill-child kills the reaper: nothing outlives the test either way.
"""

import ctypes
import os
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

from postern_instance import TIME_SCALE, parent_pid, process_table

PR_SET_PDEATHSIG = 1

# Run as PID 1 of the new namespaces (outside the chroot): mount the layers,
# say so, then reap the orphans (a daemonized master) until killed.
HOLDER = r"""
import os, subprocess, sys, time
t = sys.argv[1]
def mount(*args):
    subprocess.run(["mount", *args], check=True)
mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", t)
for d in ("upper", "work", "root"):
    os.mkdir(os.path.join(t, d))
mount("-t", "overlay", "overlay", "-o",
      f"lowerdir=/,upperdir={t}/upper,workdir={t}/work", f"{t}/root")
mount("-t", "proc", "proc", f"{t}/root/proc")
mount("--rbind", "/dev", f"{t}/root/dev")
print("ready", flush=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.2)
"""

# What commands in the root get as their whole environment.
ROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}


def _die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class ThrowawayRoot:
    """start() it, run() commands in it, read its files through path() and
    its upper layer through upper(); close() removes everything."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="pdeb.", dir="/tmp"))
        self.root = self.tmp / "root"   # as seen inside the mount namespace
        self.proc = None
        self.pid = None                 # PID 1 of the namespace, as the host sees it
        self.errors = tempfile.TemporaryFile()

    def start(self):
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--propagation", "private",
             "--kill-child", "--", "/usr/bin/python3", "-c", HOLDER, str(self.tmp)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errors,
            preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline().decode().strip()
        if line != "ready":
            self.errors.seek(0)
            raise AssertionError(f"throwaway root did not start: {line!r} "
                                 f"{self.errors.read().decode(errors='replace')}")
        deadline = time.monotonic() + 10 * TIME_SCALE
        while self.pid is None and time.monotonic() < deadline:
            kids = [pid for pid, _ in process_table() if parent_pid(pid) == self.proc.pid]
            self.pid = kids[0] if kids else None
            if self.pid is None:
                time.sleep(0.05)
        assert self.pid, "no namespace holder under unshare"
        return self

    # --- looking in ---

    def path(self, p):
        """The host's way to the root's file p (through the holder's mounts)."""
        return Path(f"/proc/{self.pid}/root{self.root}") / str(p).lstrip("/")

    def upper(self, p=""):
        return Path(f"/proc/{self.pid}/root{self.tmp}/upper") / str(p).lstrip("/")

    def new_paths(self):
        """Paths that exist in the root but not on the host: what was
        created there and is still there (overlayfs whiteouts, which mark
        removed host files, are not)."""
        top = self.upper()
        out = []
        for dirpath, dirs, files in os.walk(top):
            for name in dirs + files:
                full = Path(dirpath) / name
                st = os.lstat(full)
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    continue   # whiteout
                rel = "/" + str(full.relative_to(top))
                if not os.path.lexists(rel):
                    out.append(rel)
        return sorted(out)

    def processes(self):
        """[(pid, argv)] of the processes in the namespace but its holder
        (pids as the namespace sees them)."""
        out = []
        procdir = self.path("/proc")
        for d in os.listdir(procdir):
            if not d.isdigit() or d == "1":
                continue
            try:
                raw = (procdir / d / "cmdline").read_bytes()
            except OSError:
                continue   # gone meanwhile
            if raw:        # not a zombie
                out.append((int(d), [a.decode("utf-8", "replace")
                                     for a in raw.rstrip(b"\0").split(b"\0")]))
        return out

    # --- running things ---

    def run(self, argv, timeout=60, env=None):
        """argv in the root as root, with ROOT_ENV (plus env) only.
        Returns (returncode, output): stdout and stderr, through a file, as
        daemons started here inherit them."""
        full_env = dict(ROOT_ENV, **(env or {}))
        cmd = ["nsenter", "-t", str(self.pid), "--mount", "--pid", "--",
               "chroot", str(self.root), "/usr/bin/env", "-i",
               *[f"{k}={v}" for k, v in full_env.items()], *map(str, argv)]
        with tempfile.TemporaryFile() as out:
            try:
                rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    timeout=timeout * TIME_SCALE).returncode
            except subprocess.TimeoutExpired:
                rc = None
            out.seek(0)
            text = out.read().decode("utf-8", "replace")
        if rc is None:
            raise AssertionError(f"{argv} did not finish in {timeout * TIME_SCALE}s:\n{text}")
        return rc, text

    def sh(self, script, timeout=60, env=None):
        return self.run(["/bin/sh", "-c", script], timeout=timeout, env=env)

    # --- tearing down ---

    def close(self):
        try:
            if self.pid:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if self.proc:
                if self.proc.poll() is None:
                    try:
                        self.proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(timeout=10)
                self.proc.stdout.close()
        finally:
            self.errors.close()
            # Only the empty mount point is on the host: the tmpfs and
            # everything in it went with the namespace.
            try:
                self.tmp.rmdir()
            except OSError:
                pass
