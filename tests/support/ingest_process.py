"""``rdb24 ingest`` as production runs it, for the ingest tests and the ingest benchmark: its settings,
its process, and the status it publishes in Redis (assigned partitions)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from sandbox.stack import lifeline
from tasks.ingest.metrics import STATUS_KEY_PREFIX
from tests.support.paths import REPO_ROOT
from tests.support.waiting import wait_until


def ingest_env(
    base: Mapping[str, str], *, bootstrap: str, company: str, group: str, **extra: str
) -> dict[str, str]:
    """Settings for an ingest process: fast group joins, frequent lag statistics, no metrics port."""
    return {
        **base,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "COMPANY_SHORT_NAME": company,
        "KAFKA_GROUP_ID": group,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "INGEST_METRICS_PORT": "0",
        "INGEST_STATS_INTERVAL_MS": "1000",
        "INGEST_SHUTDOWN_TIMEOUT": "20",
        "INGEST_RETRY_BACKOFF_MAX": "2",
        **extra,
    }


class IngestProcess:
    """``rdb24 ingest`` as production runs it, in its own process group."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tasks.cli import main; main()", "ingest"],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lifeline.parent_death_signal(signal.SIGTERM),  # gone with the test session
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self, client: redis.Redis) -> dict[str, Any] | None:
        raw = client.get(f"{STATUS_KEY_PREFIX}{socket.gethostname()}-{self.pid}")
        return json.loads(raw) if raw else None

    def wait_assigned(self, client: redis.Redis, timeout: float = 60.0) -> dict[str, Any]:
        def assigned() -> Any:
            self.check_alive()
            status = self.status(client)
            return status if status and status["assigned"] else None

        return wait_until(assigned, timeout, f"ingest {self.pid} assigned partitions")

    def check_alive(self) -> None:
        if not self.running:
            raise RuntimeError(f"ingest process exited early:\n{self.logs()[-3000:]}")

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.running:
            try:
                self.terminate(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


__all__ = ["IngestProcess", "ingest_env"]
