"""Batched posts under faults (issue 15): one ``imconnector.send.messages`` carries many subscribers'
messages, so a fault hits many messages at once. Each must still be posted exactly once.

* ``kill -9`` of the worker while a batch is in flight (the portal answers slowly): the outbox keeps
  every message until its own result is stored; the flush lease expires; the next flush finds the
  ``started`` markers and looks each message up (CONNECTOR_MID) before posting it again;
* one element refused by the portal (``SUCCESS: false`` at its index, the call still succeeds): only
  that message is sent again, its neighbours are not.

Commit-then-timeout on a batched send is scenario 6 (``test_ambiguous_writes.py``), which now runs
through the batches as well.
"""

from __future__ import annotations

import time

from tests.faults import tally
from tests.faults.conftest import StackFactory
from tests.faults.scenario import finish, now


def test_worker_kill_9_mid_batch(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    assert stack.sims is not None
    bitrix24 = stack.sims.bitrix24
    worker = stack.worker("worker1", concurrency=3)
    stack.ingest()
    subscribers = stack.subscribers(12)
    stack.send(12, subscribers)  # every subscriber's dialog and contact exist before the fault
    stack.wait_delivered(90)
    bitrix24.inject("latency", method="imconnector.send.messages", seconds=2.0, count=1)
    stack.send(24, subscribers)
    stack.wait_until(lambda: not bitrix24.faults.listing(), 60, "a batched send in flight")
    time.sleep(0.5)  # inside the slow answer: the portal has it, the worker has not heard back
    worker.kill()
    worker.start(timeout=90)
    finish(stack, "15a worker kill -9 mid-batch", fault_ended_at=now(), deliver_timeout=120)


def test_one_refused_element_is_sent_again_alone(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    assert stack.sims is not None
    bitrix24 = stack.sims.bitrix24
    stack.worker("worker1", concurrency=3)
    stack.ingest()
    subscribers = stack.subscribers(8)
    refused = tally.marker(stack.run, 3)
    bitrix24.inject("refuse_element", match=refused, count=2)
    stack.send(16, subscribers)
    stack.wait_until(lambda: not bitrix24.portal.refused_texts, 60, "the element refused twice")
    finish(stack, "15b one element refused", fault_ended_at=now(), deliver_timeout=90)
