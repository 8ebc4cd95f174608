"""Scenario 13g: one subscriber's first post answers 503 again and again while five more of their
messages arrive (unkeyed records, so spread over both partitions). All six must reach the operator's
dialog once each, in the order they were written: the later ones wait for the first one's post."""

from __future__ import annotations

import re
import time

from tests.faults.conftest import StackFactory
from tests.faults.harness import StackOptions
from tests.faults.scenario import finish, now

FIRST_POST_FAILURES = 5


def dialog_markers(stack, run: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """Per chat, the markers of ``run`` in the order the portal shows them to the operator."""
    pattern = re.compile(rf"{re.escape(run)}-\d{{5}}")
    chats = []
    for chat in stack.sims.bitrix24.chats():
        found = [m for message in chat["messages"] for m in pattern.findall(str(message.get("text", "")))]
        if found:
            chats.append(found)
    return chats


def test_later_messages_wait_for_a_retried_first_post(stack_factory: StackFactory) -> None:
    stack = stack_factory(StackOptions(env={"ORDER_WAIT_MAX": "300"}))
    assert stack.sims is not None
    bitrix24 = stack.sims.bitrix24
    stack.worker("worker1", concurrency=3)
    stack.ingest()
    subscriber = stack.subscribers(1)
    fault = bitrix24.inject(
        "error", method="imconnector.send.messages", count=FIRST_POST_FAILURES, status=503, code=""
    )
    stack.send(1, subscriber, "первое")
    stack.wait_until(lambda: fault.fired >= 1, 60, "the first post refused")
    for _ in range(5):  # written one after another, a few milliseconds apart
        time.sleep(0.02)
        stack.send(1, subscriber, "следующее")
    stack.wait_until(lambda: fault.fired >= FIRST_POST_FAILURES, 60, "every 503 served")
    fault_end = now()
    finish(stack, "13g order: 503s on 1st post, 5 behind", fault_ended_at=fault_end, deliver_timeout=120)
    written = [m.marker for m in stack.sent]
    assert dialog_markers(stack, stack.run) == [written], "the operator's dialog shows them out of order"
