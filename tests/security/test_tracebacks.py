"""No entry point prints local variables in a traceback (loguru's ``diagnose``): a local may hold a
Redis URL with its password or a token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "redis://:s3cret-in-a-local@127.0.0.1:1/0"
pytestmark = pytest.mark.process  # each test runs a Python script of its own

CLI_FAILS = f"""
from tasks.cli import main  # the console script's module: it sets the command line's sink
from loguru import logger

def up():
    redis_url = {SECRET!r}
    raise ConnectionError("refused " + redis_url[:0])

try:
    up()
except ConnectionError:
    logger.exception("stack failed")
"""

WORKER_LOG_FAILS = f"""
from tasks.runtime import log
from loguru import logger
log.configure(level="INFO", json={{json}})
token = {SECRET!r}
try:
    raise RuntimeError("boom" + token[:0])
except RuntimeError:
    logger.exception("task failed")
logger.complete()
"""


def run(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run from a file: loguru can only annotate a traceback with values where it can read the source."""
    path = folder / "entry.py"
    path.write_text(script)
    return subprocess.run(
        [sys.executable, str(path)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_loguru_defaults_would_show_them(tmp_path: Path) -> None:
    """The check can fail: without our sink, the same traceback prints the secret."""
    done = run(CLI_FAILS.replace("from tasks.cli import main", "import tasks"), tmp_path)
    assert "s3cret-in-a-local" in done.stderr


def test_command_line_tracebacks_show_no_local_values(tmp_path: Path) -> None:
    done = run(CLI_FAILS, tmp_path)
    assert "stack failed" in done.stderr and "ConnectionError" in done.stderr
    assert "s3cret-in-a-local" not in done.stderr


@pytest.mark.parametrize("json", [False, True])
def test_process_log_tracebacks_show_no_local_values(json: bool, tmp_path: Path) -> None:
    done = run(WORKER_LOG_FAILS.format(json=json), tmp_path)
    assert "task failed" in done.stderr
    assert "s3cret-in-a-local" not in done.stderr
