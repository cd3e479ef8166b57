"""A tiny deliver_protocol client (lib/ipc.h) for driving a delivery agent
directly, as qmgr does: connect to queue/private/SERVICE, check the
greeting, send one request per message, read one rcpt_status per recipient.

Records are lib/record.h's framing: a type byte, the payload length as
unsigned LEB128, the payload. Attribute lists are 'A' records
("name=value") ended by an 'E' record. queue_file_envelope() reads the
sender and the recipients (with the offsets of their R records, which the
protocol names them by) straight from a queue file.
"""

import socket
import time
from pathlib import Path

MAX_PAYLOAD = 1 << 20


def leb128(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def record(rtype, payload):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return rtype.encode() + leb128(len(payload)) + payload


def attr_list(pairs):
    return b"".join(record("A", f"{k}={v}") for k, v in pairs) + record("E", b"")


def parse_records(data):
    """[(offset, type, payload bytes)] of a whole queue file."""
    out, pos = [], 0
    while pos < len(data):
        start, rtype = pos, chr(data[pos])
        pos += 1
        length = shift = 0
        while True:
            b = data[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out.append((start, rtype, data[pos:pos + length]))
        pos += length
        if rtype == "E":
            break
    return out


def queue_file_envelope(path):
    """(sender, [(offset, address)] of recipients still to deliver)."""
    sender, rcpts = None, []
    for off, rtype, payload in parse_records(Path(path).read_bytes()):
        if rtype == "S":
            sender = payload.decode("utf-8", "replace")
        elif rtype == "R":
            rcpts.append((off, payload.decode("utf-8", "replace")))
    return sender, rcpts


class DeliverClient:
    """One persistent connection to queue/private/SERVICE."""

    def __init__(self, queue_dir, service="smtp", timeout=60.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        path = str(Path(queue_dir) / "private" / service)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.buf = b""
        greeting = self.read_list()
        assert ("protocol", "deliver_protocol") in greeting, greeting

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("delivery agent closed the connection")
            self.buf += chunk

    def read_record(self):
        self._need(1)
        rtype = chr(self.buf[0])
        pos, length, shift = 1, 0, 0
        while True:
            self._need(pos + 1)
            b = self.buf[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        assert length <= MAX_PAYLOAD
        self._need(pos + length)
        payload, self.buf = self.buf[pos:pos + length], self.buf[pos + length:]
        return rtype, payload.decode("utf-8", "replace")

    def read_list(self):
        pairs = []
        while True:
            rtype, payload = self.read_record()
            if rtype == "E":
                return pairs
            assert rtype == "A", (rtype, payload)
            name, _, value = payload.partition("=")
            pairs.append((name, value))

    def deliver(self, queue_id, sender, rcpts, nexthop="", queue_name="incoming", extra=()):
        """rcpts: [(offset, address)]. Returns [(offset, dsn, text)] in order."""
        now = f"{time.time():.6f}"
        pairs = [("queue_name", queue_name), ("queue_id", queue_id), ("sender", sender),
                 ("arrival", now), ("active_time", now), ("nexthop", nexthop), *extra]
        for off, addr in rcpts:
            pairs.append(("rcpt", f"{off} {addr}"))
        self.sock.sendall(attr_list(pairs))
        out = []
        for name, value in self.read_list():
            if name != "rcpt_status":
                continue
            off, dsn, text = (value.split(" ", 2) + ["", ""])[:3]
            out.append((int(off), dsn, text))
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
