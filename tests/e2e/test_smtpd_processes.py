"""smtpd on every CPU (issue 23): master keeps one smtpd process per
online CPU (within the service's maxproc), all taking connections from the
one listener; maxproc 1 keeps a single process; and a TLS session ticket
one smtpd process issued resumes in another, because their ticket keys
come from master's secret (fd 6, lib/mail/service.h), not from each
process."""

import os

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


def served_by(inst, sessions):
    """The distinct smtpd pids that served sessions sequential sessions
    from addresses of their own, stopping once there are as many as CPUs."""
    pids = set()
    for n in range(2, 2 + sessions):
        pids.add(connect_from(inst, n))
        if len(pids) >= CPUS:
            break
    return pids


def test_one_smtpd_per_cpu_sharing_the_listener(make_instance):
    inst = make_instance()
    pids = served_by(inst, 60)
    # Sessions are spread over one process per CPU, all of them alive:
    # master started them for the listener and none has exited.
    assert len(pids) == CPUS, (pids, CPUS)
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
    """A ticket sealed by one smtpd process opens in the others: every
    connection offering the first connection's session resumes it, including
    those another process serves."""
    inst = make_instance(start=False)
    cert, key = make_cert(inst.root)
    inst.write_main_cf(tls_lines(cert, key))
    inst.start()
    ctx = client_context()
    first, reused, issuer = tls_session_from(inst, ctx, 2, None)
    assert not reused
    others = set()
    for n in range(3, 63):
        _, reused, pid = tls_session_from(inst, ctx, n, first)
        assert reused, f"connection {n} (smtpd {pid}) did not resume the ticket of smtpd {issuer}"
        if pid != issuer:
            others.add(pid)
            break
    assert others or CPUS == 1, "every TLS session was served by the process that sealed the ticket"
    wait_until(lambda: len(inst.pids("smtpd")) == CPUS, 10, what="one smtpd per CPU")
