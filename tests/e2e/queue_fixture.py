"""Queue files and the record framing, from Python, for the tests of
postqueue, postsuper and bounce.

The framing is lib/record.h's: a type byte, the payload length as unsigned
LEB128, the payload. A queue file is lib/queue_file.h's layout
(Z T S A* (O? P? N? R)* M C* E, mode 0700 when complete), named by a queue
id as lib/queue_id.c makes them: 6 base-62 digits of seconds, 4 of
microseconds, then the file's inode in base 62. `make_queue_file` writes
such a file into a real instance's queue directory, the way cleanup would
have; `BounceClient` speaks bounce_protocol to private/bounce.
"""

import os
import socket
import time
from pathlib import Path

DIGITS62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

DSN_NOTIFY_NEVER, DSN_NOTIFY_SUCCESS, DSN_NOTIFY_FAILURE, DSN_NOTIFY_DELAY = 1, 2, 4, 8


# --- framing -------------------------------------------------------------------


def leb128(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def rec(rtype, payload=b""):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return rtype.encode("ascii") + leb128(len(payload)) + payload


def attr(name, value):
    return rec("A", f"{name}={value}")


def attr_list(pairs):
    """pairs: iterable of (name, value); returns the records plus E."""
    return b"".join(attr(n, v) for n, v in pairs) + rec("E")


def parse_records(data):
    """[(type, payload bytes, offset)] of a complete byte string."""
    out, pos = [], 0
    while pos < len(data):
        start = pos
        rtype = chr(data[pos])
        pos += 1
        n, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        out.append((rtype, data[pos:pos + n], start))
        pos += n
    return out


# --- queue ids and files ---------------------------------------------------------


def base62(n, width=None):
    s = ""
    while True:
        s = DIGITS62[n % 62] + s
        n //= 62
        if not n:
            break
    if width is not None:
        s = s[-width:].rjust(width, "0")
    return s


def queue_id(sec, usec, inode):
    return base62(sec, 6) + base62(usec, 4) + base62(inode)


def queue_path(queue_dir, queue, qid):
    if queue == "deferred":
        return Path(queue_dir) / queue / qid[-1] / qid
    return Path(queue_dir) / queue / qid


class Rcpt:
    """One recipient of a fixture file."""

    def __init__(self, address, orig=None, dsn_orcpt=None, notify=0, done=False):
        self.address, self.orig, self.dsn_orcpt = address, orig, dsn_orcpt
        self.notify, self.done = notify, done
        self.offset = None   # set when the file is written


def build_queue_file(sender, rcpts, content, arrival, attrs=()):
    """The bytes of a queue file, and the Rcpt objects with their offsets."""
    rcpts = [r if isinstance(r, Rcpt) else Rcpt(r) for r in rcpts]
    if isinstance(content, str):
        content = content.encode("utf-8")
    sec, usec = int(arrival), int(round((arrival - int(arrival)) * 1e6)) % 1000000
    size_len = len(rec("Z", b"x" * 63))   # REC_SIZE_WIDTH: four %15lld fields
    body = bytearray()
    body += rec("T", f"{sec}.{usec:06d}")
    body += rec("S", sender)
    for name, value in attrs:
        body += attr(name, value)
    for r in rcpts:
        if r.orig is not None:
            body += rec("O", r.orig)
        if r.dsn_orcpt is not None:
            body += rec("P", r.dsn_orcpt)
        if r.notify:
            body += rec("N", str(r.notify))
        r.offset = size_len + len(body)
        body += rec("D" if r.done else "R", r.address)
    body += rec("M")
    content_offset = size_len + len(body)
    for i in range(0, len(content), 65536):
        body += rec("C", content[i:i + 65536])
    body += rec("E")
    size = f"{len(content):15d} {content_offset:15d} {len(rcpts):15d} {0:15d}"
    data = rec("Z", size) + bytes(body)
    assert len(rec("Z", size)) == size_len
    return data, rcpts


def make_queue_file(queue_dir, queue, sender, rcpts, content, arrival=None, attrs=(),
                    mode=0o700, mtime=None, qid=None):
    """Write a complete queue file into queue_dir/queue under its proper
    queue id (from arrival and the file's inode), or under qid when given;
    returns (id, rcpts)."""
    arrival = time.time() if arrival is None else arrival
    data, rcpts = build_queue_file(sender, rcpts, content, arrival, attrs)
    base = Path(queue_dir) / queue
    tmp = base / f"fixture.{os.getpid()}.{time.monotonic_ns()}"
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    sec = int(arrival)
    usec = int(round((arrival - sec) * 1e6)) % 1000000
    qid = qid or queue_id(sec, usec, os.stat(tmp).st_ino)
    final = queue_path(queue_dir, queue, qid)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(tmp, final)
    if mtime is not None:
        os.utime(final, (mtime, mtime))
    return qid, rcpts


def find_message(queue_dir, qid):
    """(queue name, path) of the message with id qid, or (None, None)."""
    for queue in ("incoming", "active", "deferred", "hold", "corrupt"):
        p = queue_path(queue_dir, queue, qid)
        if p.exists():
            return queue, p
    return None, None


def write_log(queue_dir, log, qid, entries):
    """Append entries (dicts of bounce_protocol attribute names) to a
    per-message status log, in the format bounce writes (lib/dsn.h)."""
    path = Path(queue_dir) / log / qid
    path.parent.mkdir(exist_ok=True)
    with open(path, "ab") as f:
        for e in entries:
            f.write(attr_list((k, str(v)) for k, v in e.items()))


def read_log(queue_dir, log, qid):
    """The entries of a per-message status log as a list of dicts."""
    path = Path(queue_dir) / log / qid
    if not path.exists():
        return []
    entries, current = [], {}
    for rtype, payload, _ in parse_records(path.read_bytes()):
        if rtype == "A":
            name, _, value = payload.decode("utf-8", "replace").partition("=")
            current[name] = value
        elif rtype == "E":
            entries.append(current)
            current = {}
    return entries


# --- bounce_protocol ---------------------------------------------------------------


class BounceClient:
    """A client of private/bounce, as qmgr is: greeting, then requests on
    one connection, each answered {status=0} or {status=1, reason}."""

    def __init__(self, queue_dir, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(Path(queue_dir) / "private" / "bounce"))
        self.buf = b""
        greeting = self.read_list()
        assert greeting == {"protocol": "bounce_protocol"}, greeting

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"bounce closed the connection; pending {self.buf!r}")
            self.buf += chunk

    def read_record(self):
        self._need(2)
        rtype = chr(self.buf[0])
        n, shift, pos = 0, 0, 1
        while True:
            self._need(pos + 1)
            byte = self.buf[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        self._need(pos + n)
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return rtype, payload

    def read_list(self):
        out = {}
        while True:
            rtype, payload = self.read_record()
            if rtype == "E":
                return out
            assert rtype == "A", (rtype, payload)
            name, _, value = payload.decode("utf-8", "replace").partition("=")
            out[name] = value

    def request(self, **attrs):
        self.sock.sendall(attr_list((k, str(v)) for k, v in attrs.items() if v is not None))
        return self.read_list()

    def append(self, qid, log, rcpt, dsn, reason, offset=None, relay="local", **extra):
        """Append one recipient status; rcpt may be a Rcpt (its address,
        orig, ORCPT, NOTIFY and offset are sent)."""
        if isinstance(rcpt, Rcpt):
            extra.setdefault("orig_rcpt", rcpt.orig)
            extra.setdefault("dsn_orcpt", rcpt.dsn_orcpt)
            extra.setdefault("dsn_notify", rcpt.notify or None)
            offset = rcpt.offset if offset is None else offset
            rcpt = rcpt.address
        return self.request(request="append", queue_id=qid, log=log, rcpt=rcpt,
                            offset=offset, dsn=dsn, reason=reason, relay=relay, **extra)

    def flush(self, qid, queue_name):
        return self.request(request="flush", queue_id=qid, queue_name=queue_name)

    def warn(self, qid, queue_name):
        return self.request(request="warn", queue_id=qid, queue_name=queue_name)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
