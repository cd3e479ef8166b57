"""smtpd on every CPU (issue 23): master keeps one smtpd process per
online CPU (within the service's maxproc), all taking connections from the
one listener; maxproc 1 keeps a single process; and a TLS session ticket
one smtpd process issued resumes in another, because their ticket keys
come from master's secret (fd 6, lib/mail/service.h), not from each
process."""

import contextlib
import os
import signal

from postern_instance import HELO, RawSMTP, wait_until
from smtpd_fixture import client_context, make_cert, tls_lines
from test_smtpd_tls import starttls_session

CPUS = os.sysconf("SC_NPROCESSORS_ONLN")


def connect_from(inst, n):
    """A session from 127.0.0.n that says EHLO and QUIT; the pid of the
    smtpd process that served it (its "connect from" line)."""
    with RawSMTP(inst.port, source=(f"127.0.0.{n}", 0)) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd(f"EHLO {HELO}")[0] == 250
        assert c.cmd("QUIT")[0] == 221
    [line] = inst.wait_log(rf"^connect from \S+\[127\.0\.0\.{n}\]$", program="smtpd")
    return line.pid


def all_smtpd_started(inst):
    """After a first session: master started one smtpd per CPU at once."""
    connect_from(inst, 2)
    return wait_until(lambda: (lambda p: p if len(p) == CPUS else None)(inst.pids("smtpd")),
                      10, what=f"{CPUS} smtpd processes")


@contextlib.contextmanager
def only_running(pids, keep):
    """Every process of pids but keep stopped (SIGSTOP) for the block: only
    keep can take a connection from the shared listener meanwhile."""
    stopped = [p for p in pids if p != keep]
    for p in stopped:
        os.kill(p, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in stopped:
            os.kill(p, signal.SIGCONT)


def test_one_smtpd_per_cpu_sharing_the_listener(make_instance):
    inst = make_instance()
    pids = all_smtpd_started(inst)
    # Each of them takes connections from the one listener: with the
    # others stopped, a new session is served by it.
    for n, pid in enumerate(pids, start=3):
        with only_running(pids, pid):
            assert connect_from(inst, n) == pid
    assert sorted(inst.pids("smtpd")) == sorted(pids)
    assert not inst.find_log(r"throttling|exit status|killed by signal|fatal:")


def test_maxproc_one_keeps_one_smtpd(make_instance):
    inst = make_instance(start=False)
    inst.write_master_cf(smtpd_maxproc=1)
    inst.start()
    pids = {connect_from(inst, n) for n in range(2, 12)}
    assert len(pids) == 1, pids
    assert inst.pids("smtpd") == list(pids)


def tls_session_from(inst, ctx, n, session):
    """A STARTTLS session from 127.0.0.n offering session: (the session,
    resumed?, the pid of the smtpd process that did the handshake)."""
    session, reused = starttls_session(inst.port, ctx, session, source=(f"127.0.0.{n}", 0))
    [line] = inst.wait_log(rf"^Anonymous TLS connection established from \S+\[127\.0\.0\.{n}\]: ",
                           program="smtpd")
    return session, reused, line.pid


def test_ticket_resumes_in_another_smtpd_process(make_instance):
    """A ticket sealed by one smtpd process opens in the others: with the
    process that sealed it stopped, another serves the next connection
    and resumes the session."""
    inst = make_instance(start=False)
    cert, key = make_cert(inst.root)
    inst.write_main_cf(tls_lines(cert, key))
    inst.start()
    pids = all_smtpd_started(inst)
    ctx = client_context()
    first, reused, issuer = tls_session_from(inst, ctx, 3, None)
    assert not reused
    for n, pid in enumerate((p for p in pids if p != issuer), start=4):
        with only_running(pids, pid):
            _, reused, served = tls_session_from(inst, ctx, n, first)
        assert served == pid
        assert reused, f"smtpd {pid} did not resume the ticket of smtpd {issuer}"
    # With one CPU there is no other process; the ticket still resumes.
    _, reused, _ = tls_session_from(inst, ctx, 10, first)
    assert reused
