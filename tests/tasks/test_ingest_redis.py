"""The ingest worker against its Celery broker (Redis) misbehaving: down, then too deep a queue.

No Celery worker runs here: the chains' first task messages are read straight from the ``flows``
list of a dedicated Valkey, which this test stops, starts and drains at will.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from sandbox.stack import embedded
from tasks.state import inflight
from tests.conftest import create_topics
from tests.support.ingest_process import IngestProcess, ingest_env
from tests.support.kafka_records import produce, subscriber_payload
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.process]
PARTITIONS = 3


@pytest.fixture
def broker_redis() -> Iterator[embedded.EmbeddedServer]:
    try:
        server = embedded.valkey().start()
    except embedded.EmbeddedServiceError as exc:
        pytest.skip(f"bundled Valkey unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture
def start_ingest(
    kafka_bootstrap: str, broker_redis: embedded.EmbeddedServer, tmp_path: Path
) -> Iterator[Callable[..., tuple[IngestProcess, str]]]:
    started: list[IngestProcess] = []

    def start(**extra: str) -> tuple[IngestProcess, str]:
        company = f"RED{uuid.uuid4().hex[:8]}"
        topic = f"MESSAGES_IN_{company}"
        create_topics(kafka_bootstrap, topic, partitions=PARTITIONS)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PYTEST_"))}
        base.update(
            REDIS_URL=f"redis://127.0.0.1:{broker_redis.port}/0", PYTHONUNBUFFERED="1", LOG_LEVEL="INFO"
        )
        env = ingest_env(base, bootstrap=kafka_bootstrap, company=company, group=f"g-{company}", **extra)
        process = IngestProcess(env, tmp_path / f"ingest-{len(started)}.log").start()
        started.append(process)
        return process, topic

    yield start
    for process in started:
        process.stop()


def queued_messages(client: redis.Redis) -> list[dict[str, Any]]:
    """The subscriber messages of the chains waiting in the ``flows`` queue (first steps' payloads)."""
    messages = []
    for raw in client.lrange("flows", 0, -1):
        envelope = json.loads(raw)
        _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        messages.append(kwargs["message"])
    return messages


def queued_message_ids(client: redis.Redis) -> list[str]:
    """The Kafka positions (``topic:partition:offset``) of the chains waiting in the ``flows`` queue.

    The message id is no longer the position (tasks.ingest.identity); the position rides along in
    the first step's payload as ``message.kafka_position``.
    """
    return [message["kafka_position"] for message in queued_messages(client)]


def message_id_at(client: redis.Redis, position: str) -> str:
    """The message id (what the ledger and the receipts are keyed by) of the queued chain at a position."""
    for message in queued_messages(client):
        if message["kafka_position"] == position:
            return str(message["message_id"])
    raise LookupError(f"no chain queued for {position}")


def test_enqueue_failure_keeps_records_and_retries_until_redis_is_back(
    kafka_bootstrap: str,
    broker_redis: embedded.EmbeddedServer,
    start_ingest: Callable[..., tuple[IngestProcess, str]],
) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{broker_redis.port}/0")
    ingest, topic = start_ingest()
    ingest.wait_assigned(client)
    seen = len(ingest.logs())
    broker_redis.stop()
    sent = produce(
        kafka_bootstrap,
        topic,
        [subscriber_payload(900001, 79131234567, 1, f"redis down {i}") for i in range(12)],
        partitions=PARTITIONS,
    )
    wait_until(lambda: "will retry" in ingest.logs()[seen:], 60, "a failed enqueue")
    broker_redis.start()
    expected = {f"{topic}:{p}:{o}" for p, o in sent}
    wait_until(
        lambda: expected <= set(queued_message_ids(client)), 60, "every chain enqueued after Redis returned"
    )
    ids = queued_message_ids(client)
    per_partition: dict[str, list[int]] = {}
    for message_id in reversed(ids):  # LPUSH: oldest last
        _, partition, offset = message_id.rsplit(":", 2)
        per_partition.setdefault(partition, []).append(int(offset))
    for partition, offsets in per_partition.items():
        assert offsets == sorted(offsets), f"partition {partition} enqueued out of order: {offsets}"
    assert ingest.running


def test_deep_flows_queue_pauses_consumption_and_resumes_below_low_mark(
    kafka_bootstrap: str,
    broker_redis: embedded.EmbeddedServer,
    start_ingest: Callable[..., tuple[IngestProcess, str]],
) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{broker_redis.port}/0")
    high, low, total = 20, 5, 150
    ingest, topic = start_ingest(
        INGEST_PAUSE_QUEUE_DEPTH=str(high),
        INGEST_RESUME_QUEUE_DEPTH=str(low),
        INGEST_BACKPRESSURE_INTERVAL="0.02",
    )
    ingest.wait_assigned(client)
    produce(
        kafka_bootstrap,
        topic,
        [subscriber_payload(900001, 79131234567, 1, f"burst {i}") for i in range(total)],
        partitions=PARTITIONS,
    )
    status = wait_until(
        lambda: (ingest.status(client) or {}).get("paused") and ingest.status(client), 30, "pause"
    )
    depth = client.llen("flows")
    assert depth < total, "everything was enqueued despite the queue depth"
    assert status["enqueued"] < total

    deepest = depth

    def drain_and_check() -> bool:
        nonlocal deepest
        current = client.llen("flows")
        deepest = max(deepest, current)
        if current > low:
            client.delete("flows")  # a worker taking the queue down
        latest = ingest.status(client) or {}
        return latest.get("enqueued", 0) >= total and not latest.get("paused")

    wait_until(drain_and_check, 60, "all records enqueued after the queue drained")
    assert deepest <= high + 40, f"queue grew to {deepest}, far above the pause mark {high}"


def test_dead_letter_topic_refused_keeps_the_record_in_the_redis_store(
    kafka_bootstrap: str,
    broker_redis: embedded.EmbeddedServer,
    start_ingest: Callable[..., tuple[IngestProcess, str]],
) -> None:
    """RosDomofon's broker may refuse ``<topic>.DLQ`` for good: the record is still kept (here the name
    is made invalid, ``!`` is not allowed in topic names, so the broker refuses it)."""
    client = redis.Redis.from_url(f"redis://127.0.0.1:{broker_redis.port}/0", decode_responses=True)
    ingest, topic = start_ingest(KAFKA_DELIVERY_TIMEOUT="2", KAFKA_DLQ_SUFFIX=".DLQ!")
    ingest.wait_assigned(client)
    sent = produce(
        kafka_bootstrap,
        topic,
        [b"\x00 not json", subscriber_payload(900001, 79131234567, 1, "after the poison")],
        partitions=1,
    )
    wait_until(
        lambda: f"{topic}:0:{sent[1][1]}" in queued_message_ids(client), 60, "the valid record enqueued"
    )
    letters = [json.loads(raw) for raw in client.hvals("rdb24:dlq:items")]
    mine = [letter for letter in letters if letter["source"].get("topic") == topic]
    assert len(mine) == 1, letters
    assert mine[0]["kind"] == "kafka_record"
    assert mine[0]["source"]["offset"] == sent[0][1]
    assert mine[0]["source"]["dlq_topic"] is None
    assert "not JSON" in mine[0]["error"]

    # `rdb24 dlq replay` puts it back on its topic; still unreadable, it is dead-lettered again.
    replayed = subprocess.run(
        [sys.executable, "-c", "from tasks.cli import main; main()", "dlq", "replay", mine[0]["id"]],
        env=ingest.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replayed.returncode == 0, replayed.stderr[-2000:]
    assert f"-> {topic}:" in replayed.stdout

    def dead_again() -> list[dict]:
        letters = [json.loads(raw) for raw in client.hvals("rdb24:dlq:items")]
        return [d for d in letters if d["source"].get("topic") == topic and d["id"] != mine[0]["id"]]

    again = wait_until(dead_again, 60, "the replayed record dead-lettered again")
    assert again[0]["payload"] == mine[0]["payload"]


# --- offsets wait for settlement (tasks/ingest/settlement.py) -------------------------------------------

SETTLE_FAST = {"INGEST_COMMIT_GRACE": "0", "INGEST_SETTLE_CHECK_INTERVAL": "0.1"}


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (negative: nothing committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


def test_offsets_are_committed_only_up_to_the_oldest_unsettled_message(
    kafka_bootstrap: str,
    broker_redis: embedded.EmbeddedServer,
    start_ingest: Callable[..., tuple[IngestProcess, str]],
) -> None:
    """No Celery worker runs, so nothing is posted: Redis accepting the chains must not commit them."""
    client = redis.Redis.from_url(f"redis://127.0.0.1:{broker_redis.port}/0", decode_responses=True)
    ingest, topic = start_ingest(**SETTLE_FAST)
    ingest.wait_assigned(client)
    group = ingest.env["KAFKA_GROUP_ID"]
    sent = produce(
        kafka_bootstrap,
        topic,
        [subscriber_payload(900001, 79131234567, 1, f"held {i}") for i in range(12)],
        partitions=PARTITIONS,
    )
    ids = [f"{topic}:{p}:{o}" for p, o in sent]
    wait_until(lambda: set(ids) <= set(queued_message_ids(client)), 60, "every chain enqueued")
    wait_until(lambda: (ingest.status(client) or {}).get("unsettled") == len(ids), 30, "held records")
    # Settle the first two records of each partition and the fourth (a gap at the third).
    by_partition: dict[int, list[int]] = {}
    for p, o in sent:
        by_partition.setdefault(p, []).append(o)
    for p, offsets in by_partition.items():
        for o in (offsets[0], offsets[1], offsets[3]):
            inflight.settle(client, message_id_at(client, f"{topic}:{p}:{o}"))
    expected = {p: offsets[2] for p, offsets in by_partition.items()}  # next to read: the unsettled third
    assert ingest.terminate(timeout=25) == 0, ingest.logs()[-3000:]
    assert committed_offsets(kafka_bootstrap, group, topic) == expected, ingest.logs()[-3000:]


def test_chains_redis_forgot_are_enqueued_again(
    kafka_bootstrap: str,
    broker_redis: embedded.EmbeddedServer,
    start_ingest: Callable[..., tuple[IngestProcess, str]],
) -> None:
    """Redis loses its data after accepting the chains (a restart from an older snapshot): the ingest
    worker, still holding their offsets, finds them neither in flight nor settled and publishes them
    again; a settled one is not."""
    client = redis.Redis.from_url(f"redis://127.0.0.1:{broker_redis.port}/0", decode_responses=True)
    ingest, topic = start_ingest(**SETTLE_FAST)
    ingest.wait_assigned(client)
    sent = produce(
        kafka_bootstrap,
        topic,
        [subscriber_payload(900001, 79131234567, 1, f"forgotten {i}") for i in range(9)],
        partitions=PARTITIONS,
    )
    ids = [f"{topic}:{p}:{o}" for p, o in sent]
    wait_until(lambda: set(ids) <= set(queued_message_ids(client)), 60, "every chain enqueued")
    done = ids[0]
    done_id = message_id_at(client, done)
    inflight.settle(client, done_id)
    wait_until(lambda: (ingest.status(client) or {}).get("unsettled") == len(ids) - 1, 30, "one settled")
    with client.pipeline() as pipe:  # one MULTI, so the ingest worker never sees the gap between
        pipe.flushall()  # everything Redis held is gone, receipts included...
        pipe.set(inflight.receipt_key(done_id), str(time.time()))  # ...except this one, which reached disk
        pipe.execute()
    again = wait_until(lambda: set(ids[1:]) <= set(queued_message_ids(client)), 60, "chains enqueued again")
    assert again
    assert done not in queued_message_ids(client)
    assert sorted(queued_message_ids(client)) == sorted(ids[1:]), "a chain was enqueued twice"
    status = wait_until(lambda: ingest.status(client), 10, "status")
    assert status["reenqueued"] == len(ids) - 1
    assert inflight.count(client) == len(ids) - 1


def test_a_partition_holding_max_held_records_pauses_until_its_oldest_settles(
    kafka_bootstrap: str,
    broker_redis: embedded.EmbeddedServer,
    start_ingest: Callable[..., tuple[IngestProcess, str]],
) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{broker_redis.port}/0", decode_responses=True)
    ingest, topic = start_ingest(INGEST_MAX_HELD="3", **SETTLE_FAST)
    ingest.wait_assigned(client)
    sent = produce(
        kafka_bootstrap,
        topic,
        [subscriber_payload(900001, 79131234567, 1, f"capped {i}") for i in range(5 * PARTITIONS)],
        partitions=PARTITIONS,
    )
    wait_until(lambda: len(queued_message_ids(client)) >= 3 * PARTITIONS, 60, "three chains per partition")
    time.sleep(2)  # time enough to enqueue more, were the partitions not paused
    held = queued_message_ids(client)
    assert len(held) == 3 * PARTITIONS, held
    first = min(o for p, o in sent if p == 0)
    inflight.settle(client, message_id_at(client, f"{topic}:0:{first}"))
    wait_until(lambda: len(queued_message_ids(client)) == 3 * PARTITIONS + 1, 30, "partition 0 resumed")
    time.sleep(1)
    assert len(queued_message_ids(client)) == 3 * PARTITIONS + 1  # one settled, one more in; the rest wait
