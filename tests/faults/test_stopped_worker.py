"""Scenario: a worker frozen (SIGSTOP, as a container freeze or a long GC pause) for longer than its
lock's lease, in the middle of a side effect, then resumed (SIGCONT).

* Inside contact creation: the portal holds our ``crm.contact.add`` for longer than the freeze and
  commits it only after the successor (a second message of the same new subscriber, on the other
  worker) took the expired phone lock and created the contact itself. The resumed worker looks the
  phone up after its create, finds the older contact and deletes its own: one contact.
* Just before a post: frozen inside the Open Lines setup that precedes the first send (the portal
  answers ``imconnector.register`` while the worker is stopped); the successor posts; the resumed
  worker's ``lease.ensure_held()`` before the send stops it: one post.
* Inside a post: the portal commits ``imconnector.send.messages`` and holds the answer; the message
  is redelivered to the other worker after the visibility timeout, which finds the post by its
  CONNECTOR_MID. The resumed worker's lease is gone, so it writes no marker over the successor's and
  does not post again: one post.
"""

from __future__ import annotations

import os
import signal
import time

from tests.faults.conftest import StackFactory
from tests.faults.harness import StackOptions
from tests.faults.scenario import finish, now
from tests.fixtures.worker import CeleryWorker

FREEZE = 15.0  # seconds; the lease is 10 s


def _freeze(worker: CeleryWorker) -> None:
    """SIGSTOP the worker's whole process group (parent and pool children), as a frozen container."""
    assert worker.process is not None
    os.killpg(worker.process.pid, signal.SIGSTOP)


def _thaw(worker: CeleryWorker) -> None:
    assert worker.process is not None
    os.killpg(worker.process.pid, signal.SIGCONT)


def _running(workers: list[CeleryWorker], task: str) -> CeleryWorker:
    """The one worker that received ``task`` (its log says so at once; asking over the broker is slower)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [w for w in workers if f"Task {task}[" in w.logs()]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise AssertionError(f"{task} was received by {len(found)} workers")
        time.sleep(0.05)
    raise AssertionError(f"no worker received {task}")


def test_worker_frozen_inside_contact_creation(stack_factory: StackFactory) -> None:
    # A task must outlive the freeze plus the portal's delay, and its message must not be
    # redelivered meanwhile: the successor here is the subscriber's second message, not a copy.
    env = {"VISIBILITY_TIMEOUT": "60", "TASK_SOFT_TIME_LIMIT": "40", "TASK_TIME_LIMIT": "50"}
    stack = stack_factory(StackOptions(env=env))
    assert stack.sims is not None
    workers = [stack.worker("worker1", concurrency=1), stack.worker("worker2", concurrency=1)]
    stack.ingest()
    subscriber = stack.subscribers(1)
    # Our create reaches the portal, which answers (and commits) only after FREEZE + 3 s.
    held = stack.sims.bitrix24.inject("latency", method="crm.contact.add", count=1, seconds=FREEZE + 3)
    stack.send(1, subscriber, text="first")
    stack.wait_until(lambda: held.fired >= 1, 60, "the first contact create to reach the portal")
    victim = _running(workers, "bitrix24.find_or_create_contact")
    _freeze(victim)
    try:
        stack.send(1, subscriber, text="second")  # taken by the other worker, which waits on the lock
        time.sleep(FREEZE)
    finally:
        _thaw(victim)
    finish(stack, "14c worker SIGSTOP 15s in contact create", fault_ended_at=now(), deliver_timeout=120)
    assert "duplicates the older contact" in victim.logs()


def test_worker_frozen_inside_a_post(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    assert stack.sims is not None
    workers = [stack.worker("worker1", concurrency=1), stack.worker("worker2", concurrency=1)]
    stack.ingest()
    subscriber = stack.subscribers(1)
    # The portal commits the post, then holds the answer past the freeze.
    held = stack.sims.bitrix24.inject(
        "commit_then_timeout", method="imconnector.send.messages", count=1, seconds=FREEZE + 3
    )
    stack.send(1, subscriber, text="post")
    stack.wait_until(lambda: held.fired >= 1, 60, "the post to reach the portal")
    victim = _running(workers, "flows.post_to_chat")
    _freeze(victim)
    try:
        time.sleep(FREEZE)  # the lease lapses; the message is redelivered to the other worker
    finally:
        _thaw(victim)
    finish(stack, "14d worker SIGSTOP 15s inside a post", fault_ended_at=now(), deliver_timeout=120)


def test_worker_frozen_just_before_a_post(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    assert stack.sims is not None
    workers = [stack.worker("worker1", concurrency=1), stack.worker("worker2", concurrency=1)]
    stack.ingest()
    subscriber = stack.subscribers(1)
    # The first message sets the connector up under the post lock; freeze the worker right there.
    # 4 s: long enough to freeze the worker while it waits, short enough to be answered meanwhile.
    held = stack.sims.bitrix24.inject("latency", method="imconnector.register", count=1, seconds=4.0)
    stack.send(1, subscriber, text="setup")
    stack.wait_until(lambda: held.fired >= 1, 60, "the connector setup to reach the portal")
    victim = _running(workers, "flows.post_to_chat")
    _freeze(victim)
    try:
        time.sleep(FREEZE)
    finally:
        _thaw(victim)
    finish(stack, "14e worker SIGSTOP 15s before a post", fault_ended_at=now(), deliver_timeout=120)
