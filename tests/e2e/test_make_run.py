"""`make run` / `make stop`, the developer's way to get an instance: swaks
delivers through it into RUN_DIR/mail/bob/new/, and `make stop` leaves no
process behind."""

import shutil
import tempfile
from pathlib import Path

import pytest

from postern_instance import (MAKE_VARS, REPO, clean_env, free_port, is_alive, kill_pids,
                              maildir_files, pids_mentioning, run_logged, wait_port, wait_until)


@pytest.fixture
def run_dir():
    base = Path(tempfile.mkdtemp(prefix="perun.", dir="/tmp"))
    rd = base / "run"   # make run must create it
    yield rd
    live = lambda: [p for p in pids_mentioning(rd) if is_alive(p)]  # noqa: E731
    if live():
        run_logged(["make", "stop", f"RUN_DIR={rd}", *MAKE_VARS], 60, cwd=str(REPO),
                   env=clean_env())
        try:
            wait_until(lambda: not live(), 10)
        except AssertionError:
            pass
    for _ in range(3):
        kill_pids(live())
    log = rd / "log" / "maillog"
    if log.exists():
        print("--- maillog tail ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:]))
    shutil.rmtree(base, ignore_errors=True)


def test_make_run_swaks_make_stop(run_dir):
    port = free_port()
    rc, out = run_logged(["make", "run", f"PORT={port}", f"RUN_DIR={run_dir}", *MAKE_VARS],
                         300, cwd=str(REPO), env=clean_env())
    assert rc == 0, out
    wait_port(port, 15)

    rc, out = run_logged(["swaks", "--server", f"127.0.0.1:{port}", "--to", "bob@localhost",
                          "--timeout", "30"], 90, env=clean_env())
    assert rc == 0, out
    assert "queued as" in out, out

    files = wait_until(lambda: maildir_files(run_dir / "mail", "bob"), 30,
                       what="delivery to RUN_DIR/mail/bob/new")
    assert len(files) == 1
    data = files[0].read_bytes()
    assert data.startswith(b"Return-Path: <"), data[:200]
    assert b"\nDelivered-To: bob@localhost\n" in data
    assert b"X-Mailer: swaks" in data

    assert [p for p in pids_mentioning(run_dir) if is_alive(p)], "no process of the instance?"
    rc, out = run_logged(["make", "stop", f"RUN_DIR={run_dir}", *MAKE_VARS], 60, cwd=str(REPO),
                         env=clean_env())
    assert rc == 0, out
    wait_until(lambda: not [p for p in pids_mentioning(run_dir) if is_alive(p)], 15,
               what="make stop to leave no process behind")
