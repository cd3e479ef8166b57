"""Small tmpfs file systems for the disk-full tests: mount one on an empty
directory, fill it to the last byte, free the space again, and unmount it
whatever happens. Mounting needs root (CAP_SYS_ADMIN); tests fail
with the reason when it is not possible.
"""

import os
import subprocess
from pathlib import Path

import pytest


def mount_tmpfs(path, size="2m"):
    """Mount a tmpfs of size on the empty directory path, or fail the test
    with the reason."""
    if os.geteuid() != 0:
        pytest.fail("disk-full tests need root to mount a small tmpfs (make check runs as root)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                        str(path)], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs on {path}: {r.stderr.strip() or r.returncode}")


def umount(path):
    """Unmount path; lazily when something still holds it open, so that a
    failed test never leaves a mount behind."""
    r = subprocess.run(["umount", str(path)], capture_output=True, timeout=20)
    if r.returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path, name="filler", leave=0):
    """Write a file under path until the file system is full, then give
    back `leave` bytes. Returns the file's path."""
    filler = Path(path) / name
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        try:
            while f.write(chunk):
                pass
        except OSError:
            pass
    size = filler.stat().st_size
    with open(filler, "r+b") as f:
        f.truncate(max(0, size - leave))
        f.flush()
        os.fsync(f.fileno())
    return filler
