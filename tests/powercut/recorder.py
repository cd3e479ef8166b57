"""The recording layer of the power-cut harness: a small FUSE file system
that holds one file, `disk` (the backing file of a loop device), and logs,
in the order they reach it, every write to it (offset and data) and every
fsync of it (what the loop device turns a flush of the block device into).
Writes to a second file, `mark`, log their data as a mark: the load
generator writes one each time a 250 arrives, so the log says which writes
and flushes came before each acknowledgement.

Run as `recorder.py BACKING_FILE MOUNTPOINT LOG` (foreground; it ends when
MOUNTPOINT is unmounted). The log is a sequence of records: a header
struct "<cQI" (kind b"W", b"F" or b"M", offset, length) and length bytes
of data (none for F). powercut.py reads it back with read_log().
"""

import errno
import os
import stat
import struct
import sys
import threading
import time

HEADER = struct.Struct("<cQI")


def read_log(path):
    """[(kind, offset, data)] of a recorder log, in order."""
    out = []
    with open(path, "rb") as f:
        while True:
            head = f.read(HEADER.size)
            if len(head) < HEADER.size:
                return out
            kind, offset, length = HEADER.unpack(head)
            data = f.read(length)
            if len(data) < length:   # the recorder died mid-record
                return out
            out.append((kind, offset, data))


def serve(backing, mountpoint, log_path):
    import fusepy   # only the recorder process needs FUSE

    class Recorder(fusepy.Operations):
        use_ns = True

        def __init__(self):
            self.fd = os.open(backing, os.O_RDWR)
            self.log = open(log_path, "ab", buffering=1 << 20)
            self.lock = threading.Lock()
            self.now = time.time_ns()

        def record(self, kind, offset, data=b""):
            self.log.write(HEADER.pack(kind, offset, len(data)))
            self.log.write(data)

        def getattr(self, path, fh=None):
            base = {"st_uid": 0, "st_gid": 0, "st_atime": self.now, "st_mtime": self.now,
                    "st_ctime": self.now}
            if path == "/":
                return dict(base, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
            if path == "/disk":
                return dict(base, st_mode=stat.S_IFREG | 0o600, st_nlink=1,
                            st_size=os.fstat(self.fd).st_size)
            if path == "/mark":
                return dict(base, st_mode=stat.S_IFREG | 0o600, st_nlink=1, st_size=0)
            raise fusepy.FuseOSError(errno.ENOENT)

        def readdir(self, path, fh):
            return [".", "..", "disk", "mark"]

        def open(self, path, flags):
            return 0

        def truncate(self, path, length, fh=None):
            return 0

        def read(self, path, size, offset, fh):
            if path != "/disk":
                return b""
            return os.pread(self.fd, size, offset)

        def write(self, path, data, offset, fh):
            with self.lock:
                if path == "/disk":
                    os.pwrite(self.fd, data, offset)
                    self.record(b"W", offset, data)
                else:
                    self.record(b"M", 0, data)
                    self.log.flush()
            return len(data)

        def fsync(self, path, datasync, fh):
            with self.lock:
                if path == "/disk":
                    self.record(b"F", 0)
                    self.log.flush()   # a reader sees every write up to a flush
            return 0

        def flush(self, path, fh):   # close(2), not a cache flush
            return 0

        def release(self, path, fh):
            return 0

        def destroy(self, path):
            with self.lock:
                self.log.flush()
                os.fsync(self.log.fileno())

    fusepy.FUSE(Recorder(), mountpoint, foreground=True, nothreads=False,
                direct_io=True, big_writes=True, max_write=131072)


if __name__ == "__main__":
    serve(*sys.argv[1:4])
