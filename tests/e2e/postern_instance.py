"""Helpers for the end-to-end tests: a real Postern instance and the tools to
observe it (maillog, Maildirs, queue directories, processes) and to talk SMTP
to it with raw sockets.

An Instance lives in a short directory under /tmp (UNIX socket paths under
queue/private must stay below the 108-byte limit, which pytest's long
tmp_path names would break) and is started with the real `postern -c ETC
start`, in instance mode: mail_owner is the user running the tests, so no
uid switching happens and every local part of mydestination is a Maildir
under mail/. Every wait here has a deadline; nothing can hang the suite.
"""

import email.utils
import getpass
import os
import re
import shutil
import signal
import socket
import smtplib
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The build tree under test: `make e2e` sets POSTERN_BUILD (build/san for
# SANITIZE=1); a relative value is taken from the repository root.
BUILD = REPO / os.environ.get("POSTERN_BUILD", "build")
POSTERN = BUILD / "bin" / "postern"
LIBEXEC = BUILD / "libexec"
DAEMONS = ("master", "smtpd", "cleanup", "qmgr", "local")

HOSTNAME = "mx.test.example"
SENDER = "sender@example.org"
HELO = "client.example"

# "Mon DD HH:MM:SS host postern/PROGRAM[pid]: text"
LOG_RE = re.compile(
    r"^(?P<stamp>\w{3} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) "
    r"(?P<program>[^\s\[]+)\[(?P<pid>\d+)\]: (?P<text>.*)$"
)
QUEUED_RE = re.compile(r"^2\.0\.0 Ok: queued as (?P<id>[0-9A-Za-z]+)$")


# --- sanitized builds ---------------------------------------------------------


def is_sanitized(program):
    """Whether program was built with AddressSanitizer (make SANITIZE=1)."""
    try:
        with open(program, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


SANITIZED = is_sanitized(POSTERN)
# ASan makes every program several times slower (more so with the fuzzing
# campaign on the same cores): every deadline of wait_until and run_logged
# stretches by this factor. Waits end as soon as their state is reached, so
# only a failing wait gets slower.
TIME_SCALE = 3 if SANITIZED else 1
# What a `make` run by a test (make run, make install) must be given to use
# the build under test rather than build/.
MAKE_VARS = [f"BUILD={BUILD}"] + (["SANITIZE=1"] if SANITIZED else [])


def sanitizer_setup():
    """Sanitizer reports of every program the tests run (daemons under master
    included: master passes its environment on) go to files in one directory,
    SAN_LOG_DIR/asan.PROGRAM.PID, not to a stderr that may be /dev/null;
    conftest.py fails the test during which one appears. Set-id programs
    cannot read these options (tests/san/san_hooks.c): theirs go to stderr.
    A helper script the tests run that imports this module keeps the test
    session's directory and options. A pytest-xdist worker (make e2e runs
    two) gets a subdirectory of its own, so that a report fails a test of
    the worker whose programs wrote it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if os.environ.get("POSTERN_SAN_LOG_DIR"):
        log_dir = Path(os.environ["POSTERN_SAN_LOG_DIR"])
        if worker and os.environ.get("POSTERN_SAN_WORKER") != worker:
            sub = log_dir / worker
            sub.mkdir(mode=0o1777, exist_ok=True)
            os.chmod(sub, 0o1777)
            os.environ["POSTERN_SAN_LOG_DIR"] = str(sub)
            os.environ["POSTERN_SAN_WORKER"] = worker
            for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
                os.environ[name] = os.environ.get(name, "").replace(
                    f"log_path={log_dir}/asan", f"log_path={sub}/asan")
            return sub
        return log_dir
    log_dir = Path(tempfile.mkdtemp(prefix="pe2e-san.", dir="/tmp"))
    os.environ["POSTERN_SAN_LOG_DIR"] = str(log_dir)
    # System-mode daemons report as mail_owner or a recipient.
    os.chmod(log_dir, 0o1777)
    common = f"log_path={log_dir}/asan:log_exe_name=1"
    # ASan keeps freed memory unused for a while to catch use after free;
    # its default 256 MB of it would count in the RSS that tests bound
    # (smtpd, qmgr). 16 MB still covers what a daemon freed recently.
    asan = f"{common}:detect_leaks=1:halt_on_error=1:quarantine_size_mb=16"
    # A user's own settings (earlier in the environment) come last and win.
    for name, opts in (("ASAN_OPTIONS", asan),
                       ("UBSAN_OPTIONS", f"{common}:print_stacktrace=1:halt_on_error=1")):
        user = os.environ.get(name)
        os.environ[name] = opts + (":" + user if user else "")
    return log_dir


SAN_LOG_DIR = sanitizer_setup() if SANITIZED else None


# What every ASan, LSan and UBSan finding contains.
SAN_FINDING_RE = re.compile(r"ERROR: |runtime error: ")


def sanitizer_reports(seen):
    """{path: text} of the findings in SAN_LOG_DIR not in seen (which gets
    them added). A file without one is left for later (its report may still
    be being written) and otherwise ignored: a process SIGKILLed during its
    exit-time leak check (teardown kills what is left of an instance) leaves
    an empty file or LSan's "Unable to get registers from thread"."""
    out = {}
    if SAN_LOG_DIR is None or not SAN_LOG_DIR.is_dir():
        return out
    # The session's directory holds the workers' subdirectories.
    for p in sorted(f for f in SAN_LOG_DIR.rglob("*") if f.is_file()):
        if p not in seen:
            text = p.read_text(errors="replace")
            if SAN_FINDING_RE.search(text):
                seen.add(p)
                out[p] = text[:20000]
    return out


def missing_binaries():
    """Names of the programs the e2e suite needs that are not built yet."""
    missing = [str(LIBEXEC / d) for d in DAEMONS if not os.access(LIBEXEC / d, os.X_OK)]
    if not os.access(POSTERN, os.X_OK):
        missing.append(str(POSTERN))
    return missing


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate until it returns a true value, which is returned.
    Raises AssertionError naming `what` at the deadline."""
    timeout *= TIME_SCALE
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_port(port, timeout=15.0, host="127.0.0.1"):
    def accepts():
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    wait_until(accepts, timeout, interval=0.1, what=f"{host}:{port} to accept connections")


def crlf(text):
    """Message text with LF line ends -> bytes with CRLF, as sent over SMTP."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def rfc2822_now():
    return email.utils.formatdate(localtime=False)


# --- processes --------------------------------------------------------------


def read_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if not raw:
        return None   # zombie or kernel thread
    return [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")]


def process_table():
    """[(pid, argv)] of every live process but this one."""
    me = os.getpid()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        argv = read_cmdline(d)
        if argv:
            out.append((int(d), argv))
    return out


def mentions(argv, path):
    """Whether a command line names path (as an argument, -cPATH, or a path
    below it)."""
    p = str(path).rstrip("/")
    for a in argv:
        a = a.rstrip("/")
        if a == p or a == "-c" + p or a.startswith(p + "/") or a.startswith("-c" + p + "/"):
            return True
        if "=" in a and a.split("=", 1)[1].rstrip("/") == p:
            return True
    return False


def parent_pid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def pids_mentioning(path):
    return [pid for pid, argv in process_table() if mentions(argv, path)]


def is_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def kill_pids(pids, sig=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_process(proc, timeout=5):
    """End a subprocess.Popen the test started: SIGTERM, then SIGKILL
    when it has not exited within timeout seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_logged(argv, timeout, cwd=None, env=None):
    """Run a command with its output in a temporary file, not a pipe: a
    daemon that inherits the descriptors must not keep us waiting for EOF.
    Returns (returncode, output text)."""
    timeout *= TIME_SCALE
    with tempfile.TemporaryFile() as out:
        try:
            rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                cwd=cwd, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if rc is None:
        raise AssertionError(f"{' '.join(map(str, argv))} did not finish in {timeout}s:\n{text}")
    return rc, text


def clean_env():
    env = dict(os.environ)
    env.pop("MAIL_CONFIG", None)
    return env


# --- the maillog ---------------------------------------------------------------


class LogLine:
    __slots__ = ("index", "program", "pid", "text", "raw")

    def __init__(self, index, program, pid, text, raw):
        self.index, self.program, self.pid, self.text, self.raw = index, program, pid, text, raw

    def __repr__(self):
        return f"LogLine({self.raw!r})"


def parse_log(path):
    try:
        data = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = []
    for raw in data.splitlines():
        m = LOG_RE.match(raw)
        if m:
            lines.append(LogLine(len(lines), m["program"], int(m["pid"]), m["text"], raw))
    return lines


# --- Maildirs -------------------------------------------------------------------


def maildir_files(mail_root, user):
    new = Path(mail_root) / user / "new"
    try:
        return sorted(p for p in new.iterdir() if p.is_file())
    except FileNotFoundError:
        return []


def all_delivered(mail_root):
    """Every file in every mail_root/USER/new, as {path: user}."""
    out = {}
    root = Path(mail_root)
    if not root.is_dir():
        return out
    for userdir in root.iterdir():
        new = userdir / "new"
        if new.is_dir():
            for p in new.iterdir():
                if p.is_file():
                    out[p] = userdir.name
    return out


def split_message(data):
    """(header lines unfolded, body) of a delivered file (LF line ends)."""
    head, sep, body = data.partition(b"\n\n")
    assert sep, f"no end of headers in {data[:200]!r}"
    headers = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1] += b"\n" + line
        else:
            headers.append(line)
    return headers, body


def header_name(h):
    return h.split(b":", 1)[0].decode("ascii", "replace").lower()


# --- raw SMTP -------------------------------------------------------------------


class RawSMTP:
    """A minimal SMTP client over a raw socket, for what smtplib hides:
    pipelining, and dropping a session halfway."""

    MAX_LINE = 8192

    def __init__(self, port, host="127.0.0.1", source=None, timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=source)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > self.MAX_LINE:
                raise AssertionError(f"reply line too long: {self.buf[:100]!r}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; pending {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def read_reply(self):
        """(code, [texts]) of one possibly multi-line reply."""
        texts = []
        while True:
            line = self.read_line()
            if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
                raise AssertionError(f"malformed reply line {line!r}")
            texts.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return int(line[:3]), texts

    def cmd(self, line):
        self.send(line.encode("utf-8") + b"\r\n")
        return self.read_reply()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the instance -----------------------------------------------------------------


# The services of a test instance's master.cf besides its smtpd listener.
DEFAULT_SERVICES = (
    "cleanup unix - - n - 0 cleanup\n"
    "qmgr fifo n - n 300 1 qmgr\n"
    "pickup fifo n - n 60 1 pickup\n"
    "local unix - n n - - local\n"
    "smtp unix - - n - - remote\n"
    "relay unix - - n - - remote\n"
    "bounce unix - - n - 0 bounce\n"
    "showq unix n - n - - showq\n"
    "virtual unix - n n - - virtual\n"
)


class Instance:
    """One Postern instance in its own directory.

    .port .root .etc .queue .mail .log (maillog path), and:
    start() stop() cleanup() send() wait_delivered() log_lines() wait_log()
    queue_files() wait_queue_empty() pids() postern()
    """

    def __init__(self, port, extra_main=(), master_cf=None, root=None):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="pe2e.", dir="/tmp"))
        self.port = port
        self.etc = self.root / "etc"
        self.queue = self.root / "queue"
        self.mail = self.root / "mail"
        self.log = self.root / "log" / "maillog"
        for d in (self.etc, self.queue, self.mail, self.log.parent):
            d.mkdir(parents=True)
        self.write_main_cf(extra_main)
        self.write_master_cf(master_cf)

    # configuration

    def main_cf_lines(self, extra=()):
        return [
            f"queue_directory = {self.queue}",
            f"mail_spool_directory = {self.mail}",
            f"maillog_file = {self.log}",
            f"daemon_directory = {LIBEXEC}",
            f"mail_owner = {getpass.getuser()}",
            f"myhostname = {HOSTNAME}",
            "mydestination = localhost, $myhostname",
            "mynetworks = 127.0.0.1/32",
            "inet_interfaces = loopback-only",
            # No lookup may leave this machine: unless a test points
            # dns_servers at its own dnsmasq (a later line wins), DNS goes
            # to a closed loopback port and fails locally.
            "dns_servers = 127.0.0.1:9",
            *extra,
        ]

    def write_main_cf(self, extra=()):
        (self.etc / "main.cf").write_text("\n".join(self.main_cf_lines(extra)) + "\n")

    def append_main_cf(self, *lines):
        with open(self.etc / "main.cf", "a") as f:
            for line in lines:
                f.write(line + "\n")

    def write_master_cf(self, text=None, smtpd_maxproc="-"):
        if text is None:
            # cleanup is private ("-"), as in conf/master.cf: smtpd and
            # pickup reach it as private/cleanup.
            text = (f"127.0.0.1:{self.port} inet n - n - {smtpd_maxproc} smtpd\n"
                    + DEFAULT_SERVICES)
        (self.etc / "master.cf").write_text(text)

    # control

    def postern(self, *args, timeout=30):
        """Run `postern -c ETC ARGS...`; returns (returncode, output)."""
        return run_logged([str(POSTERN), "-c", str(self.etc), *args], timeout,
                          cwd=str(self.root), env=clean_env())

    def start(self, wait=True):
        missing = missing_binaries()
        if missing:
            raise AssertionError("not built yet: " + ", ".join(missing))
        rc, out = self.postern("start")
        if rc != 0:
            raise AssertionError(f"postern start exited {rc}:\n{out}\n{self.log_tail()}")
        if wait:
            try:
                wait_port(self.port, 15)
            except AssertionError as e:
                raise AssertionError(f"{e}\npostern start said:\n{out}\n{self.log_tail()}")
        return out

    def master_pids(self):
        return self.pids("master")

    def stop(self, timeout=15):
        """postern stop, then wait until no process of this instance is left."""
        rc, out = self.postern("stop")
        try:
            wait_until(lambda: not self.live_pids(), timeout, interval=0.1,
                       what="all processes of the instance to exit")
        except AssertionError as e:
            raise AssertionError(f"{e}; postern stop exited {rc}: {out}\n"
                                 f"left: {self.describe_live()}")
        return rc, out

    def live_pids(self):
        return [p for p in pids_mentioning(self.etc) if is_alive(p)]

    def describe_live(self):
        table = dict(process_table())
        return [(p, table.get(p)) for p in self.live_pids()]

    def kill_everything(self):
        """Last resort in teardown: SIGKILL whatever names our config dir
        (SIGKILL also ends a process a test left SIGSTOPped)."""
        for _ in range(3):
            pids = self.live_pids()
            if not pids:
                return
            kill_pids(pids, signal.SIGKILL)
            time.sleep(0.2)

    def cleanup(self, keep=False):
        try:
            if self.live_pids() or (self.queue / "pid").exists():
                try:
                    self.postern("stop", timeout=20)
                except AssertionError:
                    pass
                try:
                    wait_until(lambda: not self.live_pids(), 10, interval=0.1)
                except AssertionError:
                    pass
        finally:
            self.kill_everything()
            if not keep and not os.environ.get("POSTERN_E2E_KEEP"):
                shutil.rmtree(self.root, ignore_errors=True)

    def pids(self, program):
        """Live processes of this instance whose program (argv[0]) is program.
        A child of one of them is left out: between fork and exec a new
        daemon is still a copy of master, with master's command line (a
        window that a sanitized build's slower fork makes easy to hit)."""
        out = []
        for pid, argv in process_table():
            if mentions(argv, self.etc) and os.path.basename(argv[0]) == program and is_alive(pid):
                out.append(pid)
        return [pid for pid in out if parent_pid(pid) not in out]

    def wait_pids(self, program, timeout=10, exclude=()):
        return wait_until(lambda: [p for p in self.pids(program) if p not in exclude],
                          timeout, what=f"a {program} process of the instance")

    # observing

    def log_lines(self):
        return parse_log(self.log)

    def log_tail(self, n=60):
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no maillog)"
        return "--- maillog tail ---\n" + "\n".join(lines[-n:])

    def smtp_log(self):
        """The text of each line smtp logged, in order."""
        return [line.text for line in self.log_lines() if line.program.endswith("/smtp")]

    def find_log(self, pattern, program=None):
        """Log lines whose text matches regex pattern (search), optionally of
        one program ("master", "smtpd", ...)."""
        rx = re.compile(pattern)
        return [l for l in self.log_lines()
                if rx.search(l.text) and (program is None or l.program.endswith("/" + program))]

    def wait_log(self, pattern, program=None, timeout=30, count=1):
        return wait_until(lambda: (lambda m: m if len(m) >= count else None)(
            self.find_log(pattern, program)), timeout, interval=0.1,
            what=f"log line /{pattern}/" + (f" from {program}" if program else ""))

    def queue_files(self):
        """Files in incoming/, active/ and deferred/ (recursively)."""
        out = []
        for sub in ("incoming", "active", "deferred"):
            d = self.queue / sub
            if d.is_dir():
                for dirpath, _dirs, files in os.walk(d):
                    out.extend(Path(dirpath) / f for f in files)
        return out

    def wait_deferred(self, qid, timeout=30):
        """Until qmgr has moved qid to deferred/: a flush before that finds
        nothing to retry, and the message waits out its backoff time."""
        wait_until(lambda: any(p.name == qid and "deferred" in p.parts
                               for p in self.queue_files()),
                   timeout, interval=0.1, what=f"{qid} in deferred/")

    def wait_queue_empty(self, timeout=30):
        try:
            wait_until(lambda: not self.queue_files(), timeout, interval=0.1,
                       what="the queue to be empty")
        except AssertionError as e:
            raise AssertionError(f"{e}: {self.queue_files()[:10]}")

    def delivered(self, user):
        return maildir_files(self.mail, user)

    def wait_delivered(self, user, count=1, timeout=30):
        """Wait until mail/USER/new holds at least count files; returns them."""
        try:
            return wait_until(lambda: (lambda f: f if len(f) >= count else None)(
                self.delivered(user)), timeout, interval=0.05,
                what=f"{count} deliveries to {user}")
        except AssertionError as e:
            raise AssertionError(f"{e} (have {len(self.delivered(user))})\n{self.log_tail()}")

    # sending

    def smtp(self, source=None, helo=HELO, timeout=30):
        s = smtplib.SMTP("127.0.0.1", self.port, local_hostname=helo, timeout=timeout,
                         source_address=source)
        return s

    def send(self, msg, rcpts=("alice@localhost",), sender=SENDER, helo=HELO, source=None,
             mail_options=()):
        """Send one message (bytes or text, LF or CRLF) in its own session;
        returns the queue id from the 250 reply."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        with self.smtp(source=source, helo=helo) as s:
            code, resp = s.ehlo(helo)
            assert code == 250, (code, resp)
            return send_in_session(s, msg, rcpts, sender, mail_options)


def send_in_session(s, msg, rcpts, sender=SENDER, mail_options=()):
    """One transaction on an open smtplib session; returns the queue id."""
    code, resp = s.mail(sender, list(mail_options))
    assert (code, resp) == (250, b"2.1.0 Ok"), (code, resp)
    for r in rcpts:
        code, resp = s.rcpt(r)
        assert (code, resp) == (250, b"2.1.5 Ok"), (r, code, resp)
    code, resp = s.data(crlf(msg))
    assert code == 250, (code, resp)
    m = QUEUED_RE.match(resp.decode())
    assert m, f"unexpected DATA reply {resp!r}"
    return m["id"]


def simple_message(subject="test", test_id=None, msgid=None, extra_headers=(), body="hello\n"):
    """A complete message (From, To, Date, Message-ID present) as LF text."""
    msgid = msgid or f"<{test_id or subject.replace(' ', '-')}.{time.time_ns()}@{HELO}>"
    lines = [f"From: {SENDER}", "To: undisclosed-recipients:;", f"Subject: {subject}",
             f"Date: {rfc2822_now()}", f"Message-ID: {msgid}"]
    if test_id is not None:
        lines.append(f"X-Test-Id: {test_id}")
    lines.extend(extra_headers)
    return "\n".join(lines) + "\n\n" + body
