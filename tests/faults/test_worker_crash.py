"""Scenario 1: ``kill -9`` of a worker at random points of the message chain, several rounds.

Bitrix24 answers slowly, so kills land while steps are running, retrying (ETA held in memory) or
between the chain's steps. Late acks + requeue on worker loss bring the work back after the
visibility timeout; deterministic task ids and effect markers keep each side effect single.
"""

from __future__ import annotations

import random
import time

from tests.faults.conftest import StackFactory
from tests.faults.scenario import finish, now

ROUNDS = 3


def test_worker_kill_9_at_random_points(stack_factory: StackFactory) -> None:
    rng = random.Random()
    stack = stack_factory()
    assert stack.sims is not None
    stack.sims.bitrix24_fault("latency", seconds=0.3)  # every call: kills find steps mid-request
    workers = [stack.worker("worker1"), stack.worker("worker2")]
    stack.ingest()
    subscribers = stack.subscribers(10)
    for round_ in range(ROUNDS):
        stack.send(15, subscribers)
        victim = workers[round_ % 2]
        # A random point of the chain: the delay is the fault's parameter, not an event to await.
        time.sleep(rng.uniform(0.5, 2.5))
        victim.kill()
        victim.start(timeout=90)
    finish(stack, "1 worker kill -9 x3", fault_ended_at=now(), deliver_timeout=120)
