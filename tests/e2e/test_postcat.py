"""postcat: a queue file as Postfix's postcat shows one, compared with the
installed Postfix's postcat (postfix_reference.py) for the same message
held in each MTA's deferred/, and over truncated and corrupt files.

Postern's records map to Postfix's record names (lib/mail/queue_dump.h);
attributes keep Postern's names, so values are compared where both files
know them (the DSN envelope id is dsn_envid here, envelope_id there).
Every postcat runs with TZ=UTC.
"""

import json
import re
import smtplib
import subprocess

import pytest

from postern_instance import BUILD, clean_env, crlf, wait_until
from postfix_reference import started_postfix
from queue_fixture import Rcpt, build_queue_file, make_queue_file, parse_records, queue_path, rec
from sendmail_helpers import run_sendmail

POSTCAT = BUILD / "bin" / "postcat"
POSTQUEUE = BUILD / "bin" / "postqueue"

MESSAGE = ("From: Alice <alice@example.org>\n"
           "To: bob@remote.example, carol@remote.example\n"
           "Subject: postcat comparison\n"
           "X-Folded: first\n"
           "\tsecond\n"
           "\n"
           "Body line one.\n"
           "\n"
           "Body: line three looks like a header.\n")
RCPT_OPTIONS = {"bob@remote.example": ["NOTIFY=SUCCESS,DELAY",
                                       "ORCPT=rfc822;bob.orig@example.net"],
                "carol@remote.example": ["NOTIFY=NEVER"]}
MARKER_RE = re.compile(r"^\*\*\* (ENVELOPE RECORDS|MESSAGE CONTENTS|HEADER EXTRACTED|"
                       r"MESSAGE FILE END) (\S+) \*\*\*$")
ARRIVAL_RE = re.compile(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$")
RECORD_NAMES = {"message_size", "message_arrival_time", "sender", "named_attribute",
                "original_recipient", "recipient", "done_recipient"}


def postcat(inst, *args, stdin=None):
    """(returncode, stdout bytes, stderr) of Postern's postcat."""
    env = dict(clean_env(), TZ="UTC")
    p = subprocess.run([str(POSTCAT), "-c", str(inst.etc), *args], capture_output=True,
                       env=env, timeout=60, input=stdin,
                       stdin=None if stdin is not None else subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr.decode()


class Dump:
    """postcat's default output cut into its sections."""

    def __init__(self, text):
        self.markers, self.envelope, self.content, self.extracted = [], [], [], []
        where = None
        for line in text.split("\n")[:-1]:
            m = MARKER_RE.match(line)
            if m:
                self.markers.append((m[1], m[2]))
                where = {"ENVELOPE RECORDS": self.envelope, "MESSAGE CONTENTS": self.content,
                         "HEADER EXTRACTED": self.extracted, "MESSAGE FILE END": None}[m[1]]
                continue
            assert where is not None, f"a line outside the sections: {line!r}"
            if where is self.content:
                where.append(line)
            else:
                name, _, value = line.partition(": ")
                where.append((name.rstrip(":"), value))

    def values(self, name, section=None):
        return [v for n, v in (section if section is not None else self.envelope) if n == name]

    def attrs(self):
        return dict(v.split("=", 1) for v in self.values("named_attribute"))

    def attr_list(self, attr):
        return [v.split("=", 1)[1] for v in self.values("named_attribute")
                if v.startswith(attr + "=")]

    def headers(self):
        """The header block as (name, value with continuation lines)."""
        out = []
        for line in self.content[:self.content.index("")]:
            if line[:1] in (" ", "\t"):
                out[-1] = (out[-1][0], out[-1][1] + "\n" + line)
            else:
                name, _, value = line.partition(":")
                out.append((name.lower(), value))
        return out

    def body(self):
        return self.content[self.content.index(""):]


@pytest.fixture(scope="module")
def postfix():
    pf = started_postfix()
    yield pf
    print(pf.log_tail())
    pf.cleanup()


def send_dsn_message(port, msg=MESSAGE, sender="s@example.org"):
    """MESSAGE with RET, ENVID and each recipient's NOTIFY and ORCPT, over
    SMTP to 127.0.0.1:port; its queue id."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as s:
        s.ehlo("client.example")
        assert s.mail(sender, ["RET=HDRS", "ENVID=env123"])[0] == 250
        for r, options in RCPT_OPTIONS.items():
            assert s.rcpt(r, options)[0] == 250
        code, resp = s.data(crlf(msg))
        assert code == 250, resp
        return resp.decode().rsplit(" ", 1)[1]


def send_both(postfix, inst):
    """The same message to Postfix and to Postern; (postfix id, postern id)
    once both are deferred."""
    pf_id = send_dsn_message(postfix.port)
    pe_id = send_dsn_message(inst.port)
    postfix.wait_deferred(pf_id)
    wait_until(lambda: queue_path(inst.queue, "deferred", pe_id).exists(), 30,
               what=f"{pe_id} to be deferred")
    return pf_id, pe_id


@pytest.fixture
def remote_instance(make_instance):
    """An instance that sends remote mail to a closed port: it stays in deferred/."""
    return make_instance(extra_main=["relayhost = [127.0.0.1]:9"])


def test_same_shape_and_values_as_postfix(postfix, remote_instance):
    inst = remote_instance
    pf_id, pe_id = send_both(postfix, inst)
    rc, pf_out, err = postfix.postcat("-q", pf_id)
    assert rc == 0, err
    rc, pe_out, err = postcat(inst, "-q", pe_id)
    assert (rc, err) == (0, "")
    pf, pe = Dump(pf_out.decode()), Dump(pe_out.decode())

    # The same sections in the same order, named QUEUE/HASH/ID.
    kinds = ["ENVELOPE RECORDS", "MESSAGE CONTENTS", "HEADER EXTRACTED", "MESSAGE FILE END"]
    assert [k for k, _ in pf.markers] == [k for k, _ in pe.markers] == kinds
    assert {n for _, n in pe.markers} == {f"deferred/{pe_id[-1]}/{pe_id}"}
    assert {n for _, n in pf.markers} == {f"deferred/{pf_id[0]}/{pf_id}"}   # its hash: the first character

    # Record names are Postfix's; the values both files hold are equal.
    assert {n for n, _ in pe.envelope} <= RECORD_NAMES
    assert {n for n, _ in pe.envelope} <= {n for n, _ in pf.envelope} | {"done_recipient"}
    for d in (pf, pe):
        assert len(d.values("message_arrival_time")) == 1
        assert ARRIVAL_RE.match(d.values("message_arrival_time")[0])
        assert re.fullmatch(r"( *\d+)+", d.values("message_size")[0])
    assert pe.values("sender") == pf.values("sender") == ["s@example.org"]
    assert pe.values("recipient") == pf.values("recipient") == list(RCPT_OPTIONS)
    assert pe.attr_list("notify_flags") == pf.attr_list("notify_flags") == ["10", "1"]
    assert "rfc822;bob.orig@example.net" in pf.attr_list("dsn_orig_rcpt")
    assert pe.attr_list("dsn_orig_rcpt") == ["rfc822;bob.orig@example.net"]
    assert pe.attrs()["dsn_envid"] == pf.attrs()["envelope_id"] == "env123"
    for name in ("client_address", "helo_name"):
        assert pe.attrs()[name] == pf.attrs()[name], name
    # message_size: the content size first, as Postern counts it (LF line ends).
    rc, content, _ = postcat(inst, "-bh", "-q", pe_id)
    assert int(pe.values("message_size")[0].split()[0]) == len(content)

    # The message as sent, between each MTA's own trace and id headers.
    own = {"received", "message-id", "date"}
    sent_headers = [(n.lower(), v) for n, v in Dump(
        "*** MESSAGE CONTENTS x ***\n" + MESSAGE).headers()]
    assert [h for h in pe.headers() if h[0] not in own] == sent_headers
    assert [h for h in pf.headers() if h[0] not in own] == sent_headers
    assert {h[0] for h in pe.headers()} == {h[0] for h in pf.headers()}
    assert pe.body() == pf.body() == [""] + MESSAGE.split("\n\n", 1)[1].split("\n")[:-1]
    assert pe.extracted == pf.extracted == []


def test_options_as_postfix(postfix, remote_instance):
    """-h, -b, -bh, -e, -o, -d and -v cut and decorate the same way."""
    inst = remote_instance
    pf_id, pe_id = send_both(postfix, inst)
    out = {}
    for flags in ("-h", "-b", "-bh", "-e", "-o", "-d", "-hv", "-eh"):
        rc, pf_out, err = postfix.postcat(flags, "-q", pf_id)
        assert rc == 0, (flags, err)
        rc, pe_out, err = postcat(inst, flags, "-q", pe_id)
        assert (rc, err) == (0, ""), flags
        out[flags] = (pf_out.decode(), pe_out.decode())

    for pf_text, pe_text in [out["-h"], out["-b"], out["-bh"]]:
        assert not MARKER_RE.search(pe_text) and "*** " not in pf_text
    for i in (0, 1):
        # -bh is the message; -h ends where -b starts, with its empty line.
        assert out["-h"][i] + out["-b"][i] == out["-bh"][i]
        assert out["-b"][i].startswith("\n")
        # -hv names every content line regular_text:
        assert all(line.startswith("regular_text: ") for line in out["-hv"][i].splitlines())
        assert out["-hv"][i].replace("regular_text: ", "") == out["-h"][i]
    assert out["-b"][0] == out["-b"][1] == "\n" + MESSAGE.split("\n\n", 1)[1]

    # -e: the markers and the envelope, no content; -eh adds the headers.
    for text in out["-e"]:
        d = Dump(text)
        assert d.content == [] and len(d.markers) == 4 and d.envelope
    for text, h in zip(out["-eh"], out["-h"]):
        assert Dump(text).content == h.split("\n")[:-1]

    # -o: a 9-wide offset on every line but the first marker, ascending;
    # -d: a 3-wide decimal type. Postern's offsets are its records' (the
    # type byte there is the record's type) and its content lines'.
    data = queue_path(inst.queue, "deferred", pe_id).read_bytes()
    for i, text in enumerate(out["-o"]):
        lines = text.split("\n")[:-1]
        assert MARKER_RE.match(lines[0])
        offsets = [int(line[:9]) for line in lines[1:]]
        assert all(re.match(r"^[ \d]{8}\d ", line) for line in lines[1:])
        assert offsets == sorted(offsets)
    pe_records = {off: t for t, _, off in parse_records(data)}
    for line in out["-o"][1].split("\n")[1:-1]:
        off, text = int(line[:9]), line[10:]
        if text.startswith(("message_size", "sender", "recipient", "*** MESSAGE CONTENTS")):
            assert off in pe_records, line
    for text in out["-d"]:
        assert all(re.match(r"^[ \d]{2}\d ", line) for line in text.split("\n")[1:-1]), text
    pe_types = {line[4:].split(":")[0]: int(line[:3]) for line in out["-d"][1].split("\n")[1:-1]}
    assert pe_types["sender"] == ord("S") and pe_types["recipient"] == ord("R")


def test_extracted_recipients(postfix, remote_instance):
    """sendmail -t: the recipients cleanup took from the headers come after
    the content, in the HEADER EXTRACTED section, in both MTAs."""
    inst = remote_instance
    msg = "From: me@example.org\nTo: t1@remote.example\nCc: t2@remote.example\nSubject: t\n\nbody\n"
    p = run_sendmail(inst, ["-t", "-f", "me@example.org"], msg)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["/usr/sbin/sendmail", "-C", str(postfix.etc), "-t", "-f", "me@example.org"],
                       input=msg.encode(), env=postfix.env(), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr

    def deferred_with(queue_list):
        for line in queue_list().splitlines():
            o = json.loads(line)
            if o["sender"] == "me@example.org" and o["queue_name"] == "deferred":
                return o["queue_id"]
        return None
    pf_id = wait_until(lambda: deferred_with(lambda: postfix.postqueue("-j")[1]), 30,
                       what="Postfix's sendmail -t message in deferred/")
    pe_id = wait_until(lambda: deferred_with(lambda: subprocess.run(
        [str(POSTQUEUE), "-c", str(inst.etc), "-j"], capture_output=True, text=True,
        env=clean_env(), timeout=30).stdout), 30, what="Postern's sendmail -t message in deferred/")
    pf = Dump(postfix.postcat("-q", pf_id)[1].decode())
    pe = Dump(postcat(inst, "-q", pe_id)[1].decode())
    assert pe.values("recipient") == pf.values("recipient") == []
    assert pe.values("recipient", pe.extracted) == pf.values("recipient", pf.extracted) == [
        "t1@remote.example", "t2@remote.example"]
    assert pe.values("sender") == pf.values("sender") == ["me@example.org"]


def test_every_queue_and_missing_ids(postfix, fixture_queue_instance):
    """-q finds a file in each queue Postern keeps mail in, named as
    Postfix names it; an id found nowhere is refused with Postfix's words."""
    inst = fixture_queue_instance
    ids = {}
    for q in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt"):
        ids[q], _ = make_queue_file(inst.queue, q, f"{q}@example.org", [f"r@{q}.example"],
                                    "Subject: x\n\nhello\n", arrival=1700000000)
    for q, qid in ids.items():
        rc, out, err = postcat(inst, "-q", qid)
        assert (rc, err) == (0, ""), q
        d = Dump(out.decode())
        name = f"{q}/{qid[-1]}/{qid}" if q == "deferred" else f"{q}/{qid}"
        assert {n for _, n in d.markers} == {name}
        assert d.values("sender") == [f"{q}@example.org"]
        assert d.values("message_arrival_time") == ["Tue Nov 14 22:13:20 2023"]
    rc, out, err = postcat(inst, "-q", ids["hold"], "1NoSuchIdAAAA0", ids["active"])
    assert rc == 1 and out.count(b"*** MESSAGE FILE END") == 2
    assert err == "postcat: warning: open queue file 1NoSuchIdAAAA0: No such file or directory\n"
    rc, _, pf_err = postfix.postcat("-q", "1NoSuchIdAAAA0")
    assert rc == 1 and "open queue file 1NoSuchIdAAAA0: No such file or directory" in pf_err


@pytest.fixture
def fixture_queue_instance(make_instance):
    inst = make_instance(start=False)
    for d in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt"):
        (inst.queue / d).mkdir(exist_ok=True)
    return inst


def sample_file():
    data, _ = build_queue_file("s@example.org", [Rcpt("a@example.com", orig="o@example.com"),
                                                 Rcpt("b@example.com", done=True)],
                               "Subject: x\n\nhello\nworld\n", 1700000000,
                               attrs=[("client_address", "192.0.2.1")])
    return data


def test_truncated_and_corrupt_files(postfix, fixture_queue_instance, tmp_path):
    """Every cut of a queue file, garbage, a bad length and data after the
    end: postcat prints what is there, says what is wrong (in Postfix's
    words where Postfix has them) and exits 1; a whole file exits 0."""
    inst = fixture_queue_instance
    data = sample_file()
    path = tmp_path / "qf"
    path.write_bytes(data)
    rc, whole, err = postcat(inst, str(path))
    assert (rc, err) == (0, "")
    whole = whole.decode()
    boundaries = {off for _, _, off in parse_records(data)}
    first_record = len(rec("Z", "x" * 63))
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        rc, out, err = postcat(inst, str(path))
        assert rc == 1, cut
        assert len(err.splitlines()) == 1 and err.startswith(f"postcat: warning: {path}: "), err
        if cut < 2:
            assert err.endswith(": input is not a valid queue file\n") and out == b"", cut
        elif cut < first_record:
            assert err.endswith(": unexpected EOF in data, record type 90 length 63\n"), err
            assert out == b"", cut
        elif cut in boundaries:
            assert err.endswith(": unexpected EOF: the file has no end record\n"), (cut, err)
        else:
            assert re.search(r": unexpected EOF (in data, record type \d+ length \d+|"
                             r"in a record header at offset \d+)$", err.strip()), (cut, err)
        # What is printed is the start of the whole output (a content line
        # cut short ends where the file does).
        text = out.decode()
        head = text.rsplit("\n", 2)[0] if "MESSAGE CONTENTS" in text else text
        assert whole.startswith(head), cut
    for junk, why in [(b"garbage\n", "input is not a valid queue file"),
                      (data + b"more", f"data after the end record, at offset {len(data)}"),
                      (rec("Z", "x") + b"T" + b"\xff" * 11, "malformed record length at offset 3"),
                      (rec("Z", "x") + b"C\x80\x80\x80\x80\x80\x01",
                       "record type 67 length 34359738368 at offset 3 is too long")]:
        path.write_bytes(junk)
        rc, out, err = postcat(inst, str(path))
        assert rc == 1 and err.endswith(f": {why}\n"), (junk, err)

    # Postfix's postcat says the same of garbage and of a file cut in a record.
    path.write_bytes(b"garbage\n")
    rc, _, pf_err = postfix.postcat(str(path))
    assert f"{path}: input is not a valid queue file" in pf_err
    pf_id = postfix.send("Subject: cut\n\n" + "line\n" * 50, ["cut@remote.example"],
                         "s@example.org")
    postfix.wait_deferred(pf_id)
    pf_data = postfix.deferred_file(pf_id).read_bytes()
    path.write_bytes(pf_data[:pf_data.index(b"line") + 2])   # inside a line's record
    rc, _, pf_err = postfix.postcat(str(path))
    assert re.search(rf"{path}: unexpected EOF in data, record type \d+ length \d+", pf_err)


def test_stdin_and_several_files(fixture_queue_instance, tmp_path):
    inst = fixture_queue_instance
    data = sample_file()
    rc, out, err = postcat(inst, stdin=data)
    assert (rc, err) == (0, "")
    d = Dump(out.decode())
    assert {n for _, n in d.markers} == {"stdin"}
    assert d.values("original_recipient") == ["o@example.com"]
    assert d.values("recipient") == ["a@example.com"]
    assert d.values("done_recipient") == ["b@example.com"]
    assert d.attrs() == {"client_address": "192.0.2.1"}
    (tmp_path / "one").write_bytes(data)
    (tmp_path / "two").write_bytes(b"junk")
    rc, out, err = postcat(inst, "-e", str(tmp_path / "one"), str(tmp_path / "two"),
                           str(tmp_path / "one"))
    assert rc == 1 and out.count(b"*** ENVELOPE RECORDS") == 2
    assert err == f"postcat: warning: {tmp_path / 'two'}: input is not a valid queue file\n"
