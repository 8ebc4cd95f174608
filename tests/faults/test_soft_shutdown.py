"""Scenario 8: SIGTERM during load. The worker soft-shuts down (REMAP_SIGTERM=SIGQUIT) and the ingest
worker finishes its record and closes; both exit 0 in bounded time and nothing is lost or doubled.

Soft shutdown requeues unfinished late-ack messages at once, so a replacement worker finishes them
without waiting out the visibility timeout.
"""

from __future__ import annotations

import signal

from tests.faults.conftest import StackFactory
from tests.faults.harness import FAULTS_ENV
from tests.faults.scenario import finish, now

SOFT_TIMEOUT = float(FAULTS_ENV["WORKER_SOFT_SHUTDOWN_TIMEOUT"])


def test_sigterm_during_load_loses_nothing(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    assert stack.sims is not None
    stack.sims.bitrix24.inject("latency", seconds=0.3)
    worker = stack.worker("worker1", concurrency=2)
    ingest = stack.ingest()
    subscribers = stack.subscribers(10)
    stack.send(30, subscribers)
    stack.wait_until(lambda: stack.posts().expected - len(stack.posts().lost) >= 3, 60, "first posts")

    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    code = worker.process.wait(timeout=SOFT_TIMEOUT + 20)
    assert code == 0, f"worker exit code {code} after SIGTERM:\n{worker.logs()[-3000:]}"

    stack.send(15, subscribers)
    ingest_code = ingest.terminate(timeout=float(FAULTS_ENV["INGEST_SHUTDOWN_TIMEOUT"]) + 10)
    assert ingest_code == 0, f"ingest exit code {ingest_code} after SIGTERM:\n{ingest.tail()}"

    fault_end = now()
    stack.worker("worker2", concurrency=2)
    stack.ingest("ingest2")
    finish(stack, "8 SIGTERM worker + ingest", fault_ended_at=fault_end)
