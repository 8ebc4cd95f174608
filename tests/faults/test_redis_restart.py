"""Scenario 3: the Redis broker restarts while messages flow; workers and ingest reconnect alone.

The stack's own Valkey keeps an append-only file (as a production Redis must), so queued and unacked
messages, effect markers and dead letters survive. While it is down the ingest worker cannot enqueue:
it must keep the records (offsets not stored) and retry, not drop them.
"""

from __future__ import annotations

import time

from tests.faults.conftest import StackFactory
from tests.faults.scenario import finish, now

OUTAGE_SECONDS = 4.0


def test_redis_restart_while_messages_flow(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    assert stack.redis_server is not None and stack.sims is not None
    stack.sims.bitrix24_fault("latency", seconds=0.2)
    stack.worker("worker1")
    stack.ingest()
    subscribers = stack.subscribers(10)
    stack.send(25, subscribers)
    stack.wait_until(lambda: stack.posts().expected - len(stack.posts().lost) >= 3, 60, "first posts")
    stack.redis_server.stop()
    stack.send(15, subscribers)  # Kafka is up: these arrive while Redis is down
    time.sleep(OUTAGE_SECONDS)  # the outage's length is the fault itself
    stack.redis_server.start()
    finish(stack, "3 redis restart", fault_ended_at=now(), deliver_timeout=120)
