"""Helpers for the ingest tests and the ingest benchmark: the ``rdb24 ingest`` process, producing
subscriber messages in the real RosDomofon shape, reading the simulators' records."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Producer

from sandbox.rosdomofon.kafka_side import incoming_payload
from sandbox.rosdomofon.state import Abonent
from tasks.ingest.metrics import STATUS_KEY_PREFIX

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{message} not met within {timeout}s")


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
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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


def subscriber_payload(abonent_id: int, phone: int, company_id: int, text: str) -> bytes:
    """A MESSAGES_IN value exactly as the RosDomofon simulator's subscriber app produces it."""

    abonent = Abonent(id=abonent_id, phone=phone, uid="", company_id=company_id)
    return json.dumps(incoming_payload(abonent, text), ensure_ascii=False).encode("utf-8")


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes],
    *,
    partitions: int | None = None,
    on_sent: Callable[[int, float], None] | None = None,
) -> list[tuple[int, int]]:
    """Produce and confirm every value (round-robin over ``partitions`` when given); (partition, offset)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    results: list[tuple[int, int] | None] = []
    errors: list[str] = []

    def report(index: int) -> Callable[[Any, Any], None]:
        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                results[index] = (msg.partition(), msg.offset())

        return on_delivery

    for index, value in enumerate(values):
        results.append(None)
        kwargs: dict[str, Any] = {"on_delivery": report(index)}
        if partitions:
            kwargs["partition"] = index % partitions
        if on_sent is not None:
            on_sent(index, time.time())
        producer.produce(topic, value, **kwargs)
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining or errors or any(r is None for r in results):
        raise RuntimeError(f"produce to {topic} failed: {remaining} unsent, errors {errors[:3]}")
    return [r for r in results if r is not None]
