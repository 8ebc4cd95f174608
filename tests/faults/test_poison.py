"""Scenario 7: poison Kafka records and malformed enqueued payloads.

Each bad input gets a clear error and a dead letter (Kafka records: the ``<topic>.DLQ`` topic with
headers naming the source; tasks: the Redis store, no retries), and the good messages around them
are posted exactly once. A message refused by Bitrix24 (400) is dead-lettered and, replayed after
the cause is gone, posted exactly once.
"""

from __future__ import annotations

import json

from confluent_kafka import Consumer, Producer

from tests.faults import report
from tests.faults.conftest import StackFactory
from tests.faults.harness import Stack
from tests.faults.scenario import now

POISON = [
    b"not json at all",
    b'{"unexpected": "shape"}',
    json.dumps({"fromAbonent": {"id": 0, "phone": 0}, "localizedPush": {"message": "system"}}).encode(),
    json.dumps(
        {"fromAbonent": {"id": 5, "phone": "abc"}, "localizedPush": {"message": "bad phone"}}
    ).encode(),
]
DLQ_HEADERS = {"dlq.source.topic", "dlq.source.partition", "dlq.source.offset", "dlq.error.message"}


def produce_poison(stack: Stack) -> None:
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    for index, value in enumerate(POISON):
        producer.produce(stack.topic_in, value=value, partition=index % stack.options.partitions)
    assert producer.flush(15) == 0, "poison records not confirmed by the broker"


def read_dlq_topic(stack: Stack, expected: int, timeout: float = 30.0) -> list[dict[str, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": stack.bootstrap,
            "group.id": f"dlq-reader-{stack.run}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([stack.topic_in + ".DLQ"])
    found: list[dict[str, str]] = []
    try:
        stack.wait_until(lambda: _poll_into(consumer, found) >= expected, timeout, f"{expected} DLQ records")
    finally:
        consumer.close()
    return found


def _poll_into(consumer: Consumer, found: list[dict[str, str]]) -> int:
    msg = consumer.poll(0.5)
    if msg is not None and msg.error() is None:
        headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
        found.append({**headers, "value": (msg.value() or b"").decode(errors="replace")})
    return len(found)


def test_poison_records_and_malformed_payloads(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    assert stack.sims is not None
    stack.sims.bitrix24.inject(
        "error", method="imconnector.send.messages", count=1, status=400, code="ERROR_ARGUMENT"
    )
    stack.worker("worker1")
    stack.ingest()
    subscribers = stack.subscribers(8)
    stack.send(12, subscribers)
    produce_poison(stack)
    stack.send(12, subscribers)

    # A producer that validates (the CLI) is refused before anything is enqueued, naming the fields.
    refused = stack.cli(
        "enqueue", "flows.handle_incoming_message", '{"message_id": "bad-cli", "abonent_id": "x"}'
    )
    assert refused.returncode != 0
    assert "abonent_id" in refused.stdout + refused.stderr and "phone" in refused.stdout + refused.stderr
    # A foreign service that skips validation (plain send_task) gets a dead letter, not retries.
    stack.probe.send_task(
        "flows.handle_incoming_message",
        kwargs={"message_id": "bad-raw", "abonent_id": -5, "phone": "12"},
        queue="flows",
    )

    expected_letters = len(POISON) + 2  # + the raw malformed payload + the message Bitrix24 refused
    stack.wait_until(
        lambda: len(stack.dead_letters()) >= expected_letters, 60, f"{expected_letters} dead letters"
    )
    stack.wait_until(lambda: len(stack.posts().lost) == 1, 60, "all but the refused message posted")
    letters = stack.dead_letters()
    by_reason: dict[str, int] = {}
    for letter in letters:
        by_reason[letter.reason] = by_reason.get(letter.reason, 0) + 1
        assert letter.reason and letter.error, f"dead letter without reason/error: {letter}"
        assert letter.attempts == 1 or letter.reason == "retries_exhausted", f"retried bad input: {letter}"
    assert by_reason.get("unreadable", 0) == len(POISON), by_reason
    raw = next(d for d in letters if d.reason == "invalid_payload")
    assert "abonent_id" in raw.error and "phone" in raw.error, raw.error
    dlq_records = read_dlq_topic(stack, len(POISON))
    assert all(set(r) >= DLQ_HEADERS for r in dlq_records), dlq_records
    assert {r["value"] for r in dlq_records} == {v.decode() for v in POISON}

    fault_end = now()
    for letter in (d for d in letters if d.kind == "task"):
        replayed = stack.cli("dlq", "replay", letter.id)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    delivered_at = stack.wait_delivered(60)
    stack.wait_settled()
    posts = stack.posts()
    report.record(
        report.ScenarioOutcome(
            scenario="7 poison + malformed payloads",
            messages=posts.expected,
            lost=len(posts.lost),
            duplicated=posts.extra + stack.contacts().extra,
            dead_lettered=len(letters),
            recovery_s=delivered_at - fault_end,
        )
    )
    assert posts.exact, posts.describe("chat posts")
    assert stack.contacts().exact, stack.contacts().describe("contacts")
    remaining = stack.dead_letters()
    assert all(d.reason in {"unreadable", "invalid_payload"} for d in remaining), remaining
    # Unreadable Kafka records replay too (back to their topic, where they are dead-lettered again).
    for letter in (d for d in letters if d.kind == "kafka_record"):
        replayed = stack.cli("dlq", "replay", letter.id)
        assert replayed.returncode == 0, f"replay of {letter.id} ({letter.kind}): {replayed.stderr[-600:]}"
