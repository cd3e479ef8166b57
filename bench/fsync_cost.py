#!/usr/bin/python3
"""What the file system alone allows: the queue-file commit of each MTA,
reduced to its system calls and run by concurrent writers, with no SMTP,
no IPC and no delivery. Not a test; prints commits per second.

    /usr/bin/python3 bench/fsync_cost.py [--writers 20] [--seconds 10] [--dir /tmp] [--size 2560]

Protocols (each writer is a process writing 2.5 KB files (--size) into one shared
directory, as 20 cleanup processes write incoming/; every file is removed
again by the writer, as qmgr would after delivery):
  postfix       create under a temporary name, write, fsync the file,
                rename to the final name (Postfix's cleanup; no
                directory fsync)
  postern       create under a temporary name, link to the final name,
                unlink the temporary name, write, fchmod, fsync the file,
                fsync the directory (Postern's cleanup today, from strace)
  tmpfile       O_TMPFILE, write, fchmod, fsync, linkat to the final name,
                fsync the directory: Postern's durability with one
                directory operation instead of three
  group         as tmpfile, but the directory fsync is shared: a writer
                whose link is already covered by a directory fsync that
                started after it (another writer's) skips its own; the
                coordination is a lock and two counters in shared memory,
                as a group commit among cleanup processes could do it
  slots         inode reuse: the writer claims a finished file from a pool
                of 64 fixed slot names (rename of a random slot to the final
                name; a missing slot costs a failed lookup, after 8 misses
                it falls back to O_TMPFILE), overwrites it from offset 0,
                ftruncates, fchmods, fsyncs the file and the directory; a
                finished file goes back with fchmod and a rename into a free
                slot (RENAME_NOREPLACE) instead of unlink
The difference between postfix and postern is what Postern's extra
directory fsync and link/unlink cost on this file system; tmpfile and
group show how much of it a change in cleanup could win back.
"""

import argparse
import ctypes
import mmap
import resource
import multiprocessing as mp
import os
import random
import shutil
import struct
import tempfile
import time

PAYLOAD = b"x" * 2560
O_TMPFILE = getattr(os, "O_TMPFILE", 0o20200000)
AT_EMPTY_PATH = 0x1000
AT_FDCWD = -100
libc = ctypes.CDLL(None, use_errno=True)


def linkat_fd(fd, path):
    """linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH): name an O_TMPFILE file.
    Needs CAP_DAC_READ_SEARCH (root); /proc/self/fd is the fallback."""
    if libc.linkat(fd, b"", AT_FDCWD, path.encode(), AT_EMPTY_PATH) == 0:
        return
    os.link(f"/proc/self/fd/{fd}", path, follow_symlinks=True)


def commit_postfix(d, name, _shared):
    tmp = f"{d}/t.{name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, PAYLOAD)
    os.fsync(fd)
    os.close(fd)
    os.rename(tmp, f"{d}/{name}")


def commit_postern(d, name, _shared):
    tmp = f"{d}/t.{name}"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.link(tmp, f"{d}/{name}")
    os.unlink(tmp)
    os.write(fd, PAYLOAD)
    os.fchmod(fd, 0o700)
    os.fsync(fd)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    os.close(fd)


def commit_tmpfile(d, name, shared):
    fd = os.open(d, os.O_RDWR | O_TMPFILE, 0o600)
    os.write(fd, PAYLOAD)
    os.fchmod(fd, 0o700)
    os.fsync(fd)
    linkat_fd(fd, f"{d}/{name}")
    os.close(fd)
    sync_dir(d, shared)


def commit_group(d, name, shared):
    fd = os.open(d, os.O_RDWR | O_TMPFILE, 0o600)
    os.write(fd, PAYLOAD)
    os.fchmod(fd, 0o700)
    os.fsync(fd)
    linkat_fd(fd, f"{d}/{name}")
    os.close(fd)
    group_sync_dir(d, shared)


SLOTS = 64
RENAME_NOREPLACE = 1


def slot_path(d, slot):
    return f"{d}.pool/{slot}"


def commit_slots(d, name, shared):
    final = f"{d}/{name}"
    for _ in range(8):
        try:
            os.rename(slot_path(d, random.randrange(SLOTS)), final)
        except FileNotFoundError:
            continue
        fd = os.open(final, os.O_RDWR)
        os.pwrite(fd, PAYLOAD, 0)
        os.ftruncate(fd, len(PAYLOAD))
        os.fchmod(fd, 0o700)
        os.fsync(fd)
        os.close(fd)
        sync_dir(d, shared)
        return
    commit_tmpfile(d, name, shared)


def release_slots(d, name):
    final = f"{d}/{name}"
    os.chmod(final, 0o600)
    for _ in range(4):
        dst = slot_path(d, random.randrange(SLOTS)).encode()
        if libc.renameat2(AT_FDCWD, final.encode(), AT_FDCWD, dst, RENAME_NOREPLACE) == 0:
            return
    os.unlink(final)


def sync_dir(d, _shared):
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)


def group_sync_dir(d, shared):
    """Shared memory: [started, completed] directory-fsync generations and a
    lock. A link made before a fsync *started* is covered once that fsync
    completes. Take a ticket = started + 1 (the first fsync that can cover
    us); if completed >= ticket already, done; else whoever holds the lock
    runs the next fsync, the others wait for it and re-check."""
    lock, mem = shared
    need = struct.unpack_from("q", mem, 0)[0] + 1
    while struct.unpack_from("q", mem, 8)[0] < need:
        with lock:
            if struct.unpack_from("q", mem, 8)[0] >= need:
                break
            gen = struct.unpack_from("q", mem, 0)[0] + 1
            struct.pack_into("q", mem, 0, gen)
            sync_dir(d, None)
            struct.pack_into("q", mem, 8, gen)


PROTOCOLS = {"postfix": commit_postfix, "postern": commit_postern,
             "tmpfile": commit_tmpfile, "group": commit_group,
             "slots": commit_slots}


def writer(proto, d, wid, seconds, shared, counts):
    commit = PROTOCOLS[proto]
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        name = f"{wid}.{n}"
        commit(d, name, shared)
        if proto == "slots":
            release_slots(d, name)
        else:
            os.unlink(f"{d}/{name}")
        n += 1
    counts[wid] = n


def run(proto, writers, seconds, base):
    d = tempfile.mkdtemp(prefix=f"fsync-{proto}.", dir=base)
    os.mkdir(f"{d}.pool")
    mem = mmap.mmap(-1, 16)
    shared = (mp.Lock(), mem)
    counts = mp.Array("l", writers)
    procs = [mp.Process(target=writer, args=(proto, d, w, seconds, shared, counts))
             for w in range(writers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(seconds + 120)
    elapsed = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(f"{d}.pool", ignore_errors=True)
    n = max(1, sum(counts))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return n / elapsed, cpu / n * 1000, struct.unpack_from("q", mem, 0)[0]


def main():
    global PAYLOAD
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writers", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--protocols", default="postfix,postern,tmpfile,group,slots")
    ap.add_argument("--size", type=int, default=2560,
                    help="bytes per file (scenario (c): 102400)")
    args = ap.parse_args()
    PAYLOAD = b"x" * args.size    # the writers are forked after this
    print(f"{args.writers} writers, {args.seconds:g} s each, {args.size} bytes per file, "
          f"in {args.dir}, load {os.getloadavg()[0]:.1f}")
    for proto in args.protocols.split(","):
        rate, cpu_ms, dir_syncs = run(proto, args.writers, args.seconds, args.dir)
        extra = f", {dir_syncs} directory fsyncs" if proto == "group" else ""
        print(f"{proto:8s} {rate:8.0f} commits/s ({rate * args.size / 1e6:.0f} MB/s), "
              f"{cpu_ms:.3f} ms CPU per commit (the loop and the unlink included){extra}",
              flush=True)


if __name__ == "__main__":
    main()
