"""Two ``celery -A tasks beat`` processes with RedBeat: only one schedules; kill it, the other takes over.

The beats get their own Redis database (no test worker listens there), so the length of the
``reconcile`` queue counts exactly the runs they enqueued.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from sandbox.stack.redis_db import CLAIM_KEY, claim_database, release_database
from tasks.runtime.schedule import redbeat_lock_key

ROOT = Path(__file__).resolve().parents[3]
LOCK_TIMEOUT = 3


class Beat:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "tasks",
                    "beat",
                    "-S",
                    "redbeat.RedBeatScheduler",
                    "-l",
                    "DEBUG",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def sent(self) -> int:
        return self.text().count("Sending due task reconcile-accounts")

    def holds_lock(self) -> bool:
        return "beat: Acquired lock" in self.text()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def beat_db(redis_server_url: str) -> Iterator[str]:
    url = claim_database(redis_server_url)
    client = redis.Redis.from_url(url)
    for key in client.scan_iter():
        if key.decode() != CLAIM_KEY:
            client.delete(key)
    yield url
    for key in client.scan_iter():
        if key.decode() != CLAIM_KEY:
            client.delete(key)
    release_database(url)


@pytest.fixture
def start_beat(beat_db: str, tmp_path: Path, worker_base_env: dict[str, str]) -> Iterator[Callable[[], Beat]]:
    env = {
        **worker_base_env,
        "REDIS_URL": beat_db,
        "RECONCILE_INTERVAL_SECONDS": "1",
        "REDBEAT_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
        "LOG_LEVEL": "DEBUG",
    }
    beats: list[Beat] = []

    def start() -> Beat:
        beat = Beat(env, tmp_path / f"beat-{len(beats)}.log")
        beats.append(beat)
        return beat

    yield start
    for beat in beats:
        beat.kill()


@pytest.mark.process
@pytest.mark.timeout(120)
def test_only_one_beat_schedules_and_a_standby_takes_over(
    start_beat: Callable[[], Beat], beat_db: str
) -> None:
    queue = redis.Redis.from_url(beat_db)
    first = start_beat()
    wait_for(first.holds_lock, 30, "the first beat to take the RedBeat lock")
    wait_for(lambda: first.sent() >= 2, 30, "the first beat to send runs")
    assert queue.exists(redbeat_lock_key())

    second = start_beat()
    wait_for(
        lambda: "beat: Acquiring lock" in second.text() or "Starting" in second.text(), 30, "second beat up"
    )
    queued_before, sent_before = queue.llen("reconcile"), first.sent()
    time.sleep(4)  # several 1 s intervals: one scheduler means about one run per second, not two
    assert not second.holds_lock() and second.sent() == 0
    runs = queue.llen("reconcile") - queued_before
    assert 2 <= runs <= first.sent() - sent_before + 1 <= 6

    first.kill()  # no clean shutdown: the lock is left to expire
    wait_for(second.holds_lock, LOCK_TIMEOUT + 15, "the standby beat to take over the lock")
    queued = queue.llen("reconcile")
    wait_for(lambda: second.sent() >= 2, 15, "the standby beat to send runs")
    assert queue.llen("reconcile") > queued
