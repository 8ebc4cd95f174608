"""Scenario 2: ``kill -9`` of the Kafka ingest worker mid-stream, then a restart.

Offsets are stored only after a chain was accepted, so the restarted consumer re-reads what was not
committed; the re-read records carry the same ids (same topic, timestamp and value), so their chains are
the same tasks and post nothing twice.
"""

from __future__ import annotations

from tests.faults.conftest import StackFactory
from tests.faults.scenario import finish, now


def test_ingest_kill_9_mid_stream(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    stack.worker("worker1")
    ingest = stack.ingest()
    subscribers = stack.subscribers(10)
    stack.send(25, subscribers)
    stack.wait_until(lambda: stack.posts().expected - len(stack.posts().lost) >= 3, 60, "first posts")
    ingest.kill()
    stack.send(15, subscribers)  # produced while no consumer runs
    ingest.start()
    finish(stack, "2 ingest kill -9", fault_ended_at=now())
