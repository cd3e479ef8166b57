"""pytest fixtures for the end-to-end suite (see tests/README.md).

`instance` is a started Postern instance with the default configuration;
`make_instance(extra_main=[...], start=True)` makes more, or ones with extra
main.cf lines. Teardown always runs `postern -c ETC stop` and then kills
anything still naming the instance's config directory, and prints the end
of the maillog, which pytest shows only when the test failed.

Against a sanitized build (make e2e SANITIZE=1), a sanitizer report written
by any program during a test fails that test, at its teardown.
"""

import os
import shutil

import pytest

import postern_instance
from postern_instance import Instance, free_port

_san_seen = set()


def _san_failure(reports):
    return "sanitizer report(s):\n" + "\n".join(
        f"--- {path}\n{text}" for path, text in reports.items())


@pytest.fixture(autouse=True)
def sanitizer_check():
    """Runs its teardown after every other function-scoped fixture's, so
    after the test's instances have stopped (LeakSanitizer reports at exit).
    A report that a module-scoped fixture's processes write after its last
    test fails the next test, or the session (pytest_sessionfinish)."""
    yield
    reports = postern_instance.sanitizer_reports(_san_seen)
    if reports:
        pytest.fail(_san_failure(reports), pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    reports = postern_instance.sanitizer_reports(_san_seen)
    if reports:
        print("\n" + _san_failure(reports))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    # The xdist controller, which sees every worker's reports, removes the
    # session's directory when none had a finding; a worker leaves it.
    log_dir = postern_instance.SAN_LOG_DIR
    if log_dir is not None and not _san_seen and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(log_dir, ignore_errors=True)


@pytest.fixture
def make_instance():
    made = []

    def factory(extra_main=(), start=True, master_cf=None):
        inst = Instance(free_port(), extra_main=extra_main, master_cf=master_cf)
        made.append(inst)
        if start:
            inst.start()
        return inst

    yield factory
    for inst in made:
        print(f"instance {inst.root} (port {inst.port})")
        print(inst.log_tail(80))
        inst.cleanup()


@pytest.fixture
def instance(make_instance):
    return make_instance()


@pytest.fixture
def require_root():
    """Tests that need root (system mode, mounts) fail without it: make
    check runs as root, as CI does, and a skip would hide that."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root: run make check as root, as CI does")


@pytest.fixture(scope="session")
def dovecot_session():
    """One private Dovecot (tests/e2e/dovecot_fixture.py) for the whole test
    session: auth and LMTP, on UNIX sockets and loopback ports."""
    from dovecot_fixture import Dovecot
    d = Dovecot()
    d.start()
    yield d
    d.cleanup()


@pytest.fixture
def dovecot(dovecot_session):
    """The session's Dovecot, running (a test before may have stopped it to
    see Postern cope); its log tail is printed for a failing test."""
    dovecot_session.start()
    yield dovecot_session
    print("--- dovecot log tail ---\n" + dovecot_session.log_tail())
