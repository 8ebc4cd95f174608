"""Servers die with whoever started them (``sandbox.stack.lifeline``); SIGTERM stops a test session
cleanly.

Each case runs a real owner process: a script or a pytest session that starts a bundled Valkey, then
is killed. ``kill -9`` runs no code in the owner, so only the kernel's parent-death signal can stop
the server; SIGTERM must unwind through the fixture finaliser that stops it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
OWNER = """
import time
from sandbox.stack import embedded
server = embedded.valkey().start()
print(server.process.pid, flush=True)
time.sleep(600)
"""
SESSION = """
import time
from pathlib import Path

import pytest
from sandbox.stack import embedded


@pytest.fixture
def server():
    started = embedded.valkey().start()
    print("server", started.process.pid, flush=True)
    yield started
    started.stop()
    Path(__file__).with_name("finalised").write_text("yes")


def test_sleeps(server):
    print("sleeping", flush=True)
    time.sleep(600)
"""


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def read_until(process: subprocess.Popen[str], prefix: str) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(prefix):
            return line
    pytest.fail(f"the owner exited (rc={process.wait()}) before printing {prefix!r}")


def test_kill_9_of_the_owner_takes_its_server_along() -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        server_pid = int(read_until(owner, ""))
        assert psutil.pid_exists(server_pid)
        owner.kill()
        owner.wait(timeout=10)
        assert gone_within(server_pid, 5.0), "the server outlived its killed owner"
    finally:
        with_group_killed(owner)


def test_sigterm_of_a_test_session_runs_the_finalisers(tmp_path: Path) -> None:
    (tmp_path / "test_session.py").write_text(SESSION, encoding="utf-8")
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_session.py")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        server_pid = int(read_until(session, "server").split()[1])
        read_until(session, "sleeping")
        session.send_signal(signal.SIGTERM)
        output = session.communicate(timeout=60)[0]
        assert (tmp_path / "finalised").exists(), output
        assert gone_within(server_pid, 5.0), "the fixture's server outlived the session"
        assert "SIGTERM received" in output, output
    finally:
        with_group_killed(session)


def with_group_killed(process: subprocess.Popen[str]) -> None:
    """Whatever a failed case left behind: the owner's group (the servers have sessions of their own
    and are stopped by the kernel or the finaliser, which is what these tests check)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
