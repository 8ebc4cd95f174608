"""No fault: the harness itself counts exactly one post per message and one contact per subscriber.

If this fails, every other scenario's numbers mean nothing.
"""

from __future__ import annotations

from tests.faults.conftest import StackFactory
from tests.faults.scenario import finish, now


def test_baseline_every_message_posted_once(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    stack.worker("worker1")
    stack.ingest()
    subscribers = stack.subscribers(8)
    stack.send(30, subscribers)
    finish(stack, "0 baseline (no fault)", fault_ended_at=now())
