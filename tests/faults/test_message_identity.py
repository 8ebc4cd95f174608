"""Scenarios 13a/13b: what is one subscriber message (issue 13 item 1, ``tasks/ingest/identity.py``).

13a is ``make run`` twice: the in-memory Kafka restarts empty, so the second run's records sit at the
very offsets of the first run's, while Redis still holds the first run's effect markers. With ids
taken from ``topic:partition:offset`` every second-run message was taken for an old one (nothing
posted, nothing dead-lettered). 13b is a producer's retry duplicate: the same value with the same
record timestamp at another offset is one message, posted once.
"""

from __future__ import annotations

import json
import time

from confluent_kafka import Producer

from tests.conftest import create_topics
from tests.faults import tally
from tests.faults.conftest import StackFactory
from tests.faults.harness import SentMessage, Stack, StackOptions
from tests.faults.scenario import finish, now


def test_reused_offsets_after_kafka_restarted_empty_are_new_messages(stack_factory: StackFactory) -> None:
    # One partition: the second batch lands at exactly the offsets 0..29 of the first.
    stack = stack_factory(StackOptions(partitions=1))
    assert stack.kafka_server is not None
    stack.worker("worker1")
    ingest = stack.ingest()
    subscribers = stack.subscribers(8)
    stack.send(30, subscribers)
    stack.wait_delivered(90)
    stack.wait_settled()

    ingest.terminate()
    stack.kafka_server.kill()  # memory storage: records, topics and committed offsets are gone
    stack.kafka_server.start()
    create_topics(stack.bootstrap, stack.topic_in, partitions=1)
    create_topics(stack.bootstrap, stack.topic_out, stack.topic_in + ".DLQ")
    ingest.start()
    stack.send(30, subscribers)
    finish(stack, "13a kafka restarted empty: offsets reused", fault_ended_at=now(), deliver_timeout=120)
    # The ids differ: the fingerprint check (the second line of defence) never had to step in.
    assert not id_conflicts(stack), id_conflicts(stack)


def id_conflicts(stack: Stack) -> dict[str, str]:
    from tasks.runtime.metrics import KEY_PREFIX, MESSAGE_ID_CONFLICTS

    return stack.redis().hgetall(KEY_PREFIX + MESSAGE_ID_CONFLICTS.name)


def _record(stack: Stack, abonent_id: int, phone: str, text: str) -> bytes:
    """A MESSAGES_IN value in RosDomofon's shape (as the simulator's subscriber side produces it)."""
    return json.dumps(
        {
            "fromAbonent": {
                "id": abonent_id,
                "phone": int(phone),
                "companyId": None,
                "restrictionPushTokenIds": [],
            },
            "channel": "support",
            "message": None,
            "deliveryMethod": None,
            "toAbonents": None,
            "broadcast": False,
            "waitResponse": True,
            "localizedPush": {"message": text, "messageKey": None, "messageArgs": None},
        },
        ensure_ascii=False,
    ).encode()


def test_a_producer_retry_duplicate_is_posted_once(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    stack.worker("worker1")
    stack.ingest()
    subscribers = stack.subscribers(6)
    stack.send(10, subscribers)  # ordinary traffic around the duplicates
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    for n, (abonent_id, phone) in enumerate(subscribers):
        mark = tally.marker(stack.run, len(stack.sent))
        value = _record(stack, abonent_id, phone, f"{mark} дубль")
        stamp = int(time.time() * 1000) - n
        # The retry: same bytes, same record timestamp, another offset (and here another partition).
        for partition in (0, 1, 1):
            producer.produce(stack.topic_in, value=value, partition=partition, timestamp=stamp)
        stack.sent.append(SentMessage(mark, abonent_id, phone, time.monotonic()))
    assert producer.flush(10) == 0
    stack.send(10, subscribers)
    finish(stack, "13b producer retry duplicate (same value + timestamp)", fault_ended_at=now())
    assert not id_conflicts(stack)
