"""Scenario 4: the Kafka broker restarts while messages flow.

A dedicated Tansu on S3 storage (local moto server) keeps records and committed offsets across the
restart, like a real broker's log. The ingest worker is not restarted: it must reconnect by itself,
resume from its committed offsets and post nothing twice.
"""

from __future__ import annotations

from tests.faults.conftest import StackFactory
from tests.faults.harness import StackOptions
from tests.faults.scenario import finish, now


def test_kafka_broker_restart_while_messages_flow(stack_factory: StackFactory) -> None:
    stack = stack_factory(StackOptions(persistent_kafka=True))
    assert stack.kafka_server is not None and stack.sims is not None
    stack.sims.bitrix24_fault("latency", seconds=0.2)
    stack.worker("worker1")
    ingest = stack.ingest()
    subscribers = stack.subscribers(10)
    stack.send(25, subscribers)
    stack.wait_until(lambda: stack.posts().expected - len(stack.posts().lost) >= 3, 60, "first posts")
    stack.kafka_server.kill()
    stack.kafka_server.start()
    stack.send(15, subscribers)
    finish(stack, "4 kafka broker restart", fault_ended_at=now(), deliver_timeout=120)
    assert ingest.running, "the ingest worker died with the broker instead of reconnecting"
