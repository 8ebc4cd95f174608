"""The Kafka ingest worker end to end: ``rdb24 ingest`` processes, the bundled Tansu broker, a real
Celery worker, real Redis and both simulators over HTTP (Bitrix24 in CRM-chat mode, rate limit off).

Every test produces messages whose text carries a unique tag ``[tag:i]`` and counts the chat posts
carrying each tag in the Bitrix24 simulator, so "exactly once in effect" is checked on the effect.
All ingest processes of this module share one consumer group, as production does.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from confluent_kafka import Consumer, TopicPartition

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon.server import RosDomofonSimulator
from sandbox.stack import embedded
from tasks.ingest import dead_letters as dlq
from tests.conftest import create_topics
from tests.support.celery_worker import CeleryWorker
from tests.support.ingest_process import IngestProcess, ingest_env
from tests.support.kafka_records import produce, subscriber_payload
from tests.support.simulators import contacts_with_phone, crm_chat_env, rosdomofon_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

# Messages of the two-process test; lower it (env RDB24_INGEST_TEST_MESSAGES) on a slow machine.
MANY_MESSAGES = int(os.environ.get("RDB24_INGEST_TEST_MESSAGES", "500"))
PARTITIONS = 3
SUBSCRIBERS = 25
TAG = re.compile(r"\[\u2060?(\w+):(\d+)\]")  # posted subscriber text is inert: a word joiner follows "["


# --- the stack -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def company() -> str:
    return f"ING{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def rd_sim(kafka_bootstrap: str, company: str) -> Iterator[RosDomofonSimulator]:
    topic = f"MESSAGES_IN_{company}"
    create_topics(kafka_bootstrap, topic, partitions=PARTITIONS)
    create_topics(kafka_bootstrap, f"{topic}.DLQ")
    sim = RosDomofonSimulator(accounts=40, seed=11, company=company, kafka_bootstrap=kafka_bootstrap).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def b24_sim() -> Iterator[Bitrix24Simulator]:
    sim = Bitrix24Simulator(rate_limit=False).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def stack_env(
    module_redis_url: str,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    worker_base_env: dict[str, str],
    kafka_bootstrap: str,
    company: str,
) -> dict[str, str]:
    base = {
        **worker_base_env,
        **rosdomofon_env(rd_sim),
        **crm_chat_env(b24_sim),
        "REDIS_URL": module_redis_url,
        "LOG_LEVEL": "INFO",
        # The simulator's rate limit is off; our shared limiter (2 req/s in production) too.
        "BITRIX24_RATE": "1000",
        "BITRIX24_BURST": "1000",
    }
    return ingest_env(base, bootstrap=kafka_bootstrap, company=company, group=f"rdb24-{company}")


@pytest.fixture(scope="module")
def worker(
    stack_env: dict[str, str], celery_worker_factory: Callable[..., CeleryWorker]
) -> Iterator[CeleryWorker]:
    started = celery_worker_factory(stack_env, concurrency=8)
    yield started
    started.stop()


@dataclass(frozen=True)
class Lane:
    """One test's own MESSAGES_IN topic (3 partitions + DLQ) and consumer group.

    Tansu can leave a group stuck in a rebalance for the whole rebalance timeout when a member leaves
    while another is rejoining (real Kafka handles that LeaveGroup at once), so tests do not share
    groups. The ingest process reads the lane's topic through its own COMPANY_SHORT_NAME; the worker
    keeps the simulator's company.
    """

    company: str
    bootstrap: str

    @property
    def topic(self) -> str:
        return f"MESSAGES_IN_{self.company}"

    @property
    def group(self) -> str:
        return f"rdb24-{self.company}"

    def env(self) -> dict[str, str]:
        return {"COMPANY_SHORT_NAME": self.company, "KAFKA_GROUP_ID": self.group}


@pytest.fixture
def lane(kafka_bootstrap: str, company: str) -> Lane:
    made = Lane(f"{company}x{uuid.uuid4().hex[:6]}", kafka_bootstrap)
    create_topics(kafka_bootstrap, made.topic, partitions=PARTITIONS)
    create_topics(kafka_bootstrap, f"{made.topic}.DLQ")
    return made


@pytest.fixture
def ingest_factory(
    stack_env: dict[str, str], worker: CeleryWorker, tmp_path: Path
) -> Iterator[Callable[..., IngestProcess]]:
    started: list[IngestProcess] = []

    def start(lane: Lane | None = None, **env: str) -> IngestProcess:
        merged = {**stack_env, **(lane.env() if lane else {}), **env}
        process = IngestProcess(merged, tmp_path / f"ingest-{len(started)}.log").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


# --- reading the effects -------------------------------------------------------------------------------


def subscribers(sim: RosDomofonSimulator, count: int) -> list[tuple[int, int, int]]:
    """(abonent id, phone, company id) of the owners of the first ``count`` accounts."""
    with sim.world.lock:
        accounts = sorted(sim.world.accounts.values(), key=lambda a: a.id)[:count]
        owners = [sim.world.abonents[a.owner_id] for a in accounts]
        return [(o.id, o.phone, o.company_id) for o in owners]


def posts_by_tag(sim: Bitrix24Simulator, tag: str) -> collections.Counter[int]:
    """How many chat posts carry ``[tag:i]``, per i."""
    counts: collections.Counter[int] = collections.Counter()
    for chat in sim.chats():
        for message in chat["messages"]:
            for found_tag, index in TAG.findall(str(message.get("text", ""))):
                if found_tag == tag:
                    counts[int(index)] += 1
    return counts


def all_posted(sim: Bitrix24Simulator, tag: str, count: int) -> Callable[[], bool]:
    return lambda: len(posts_by_tag(sim, tag)) >= count


def payloads(people: list[tuple[int, int, int]], tag: str, count: int) -> list[bytes]:
    return [
        subscriber_payload(*people[i % len(people)], f"Домофон не работает [{tag}:{i}]") for i in range(count)
    ]


def assert_exactly_once(sim: Bitrix24Simulator, tag: str, count: int) -> None:
    posts = posts_by_tag(sim, tag)
    missing = sorted(set(range(count)) - set(posts))
    twice = sorted(i for i, n in posts.items() if n > 1)
    assert not missing, f"{len(missing)} messages never posted, e.g. {missing[:10]}"
    assert not twice, f"{len(twice)} messages posted more than once, e.g. {twice[:10]}"


def _scrape(port: int) -> str:
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return ""


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


# --- tests ---------------------------------------------------------------------------------------------


def test_subscriber_message_becomes_contact_and_chat_post(
    rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, ingest_factory: Callable[..., IngestProcess]
) -> None:
    ingest_factory()
    abonent_id, phone, _ = subscribers(rd_sim, 1)[0]
    tag = f"one{uuid.uuid4().hex[:6]}"
    rd_sim.send_from_subscriber(abonent_id, f"Не открывается калитка [{tag}:0]")
    wait_until(all_posted(b24_sim, tag, 1), 60, "chat post")
    assert_exactly_once(b24_sim, tag, 1)
    contacts = contacts_with_phone(b24_sim, str(phone))
    assert len(contacts) == 1, contacts


def test_many_messages_two_processes_each_handled_once(
    lane: Lane,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    stack_env: dict[str, str],
    ingest_factory: Callable[..., IngestProcess],
) -> None:
    first, second = ingest_factory(lane), ingest_factory(lane)

    def split() -> bool:
        a, b = first.status(module_redis), second.status(module_redis)
        first.check_alive()
        second.check_alive()
        if not a or not b or not a["assigned"] or not b["assigned"]:
            return False
        return (
            not set(a["assigned"]) & set(b["assigned"]) and len(a["assigned"] + b["assigned"]) == PARTITIONS
        )

    wait_until(split, 60, "both ingest processes sharing the partitions")
    people = subscribers(rd_sim, SUBSCRIBERS)
    tag = f"many{uuid.uuid4().hex[:6]}"
    produce(
        lane.bootstrap,
        lane.topic,
        payloads(people, tag, MANY_MESSAGES),
        partitions=PARTITIONS,
    )
    wait_until(all_posted(b24_sim, tag, MANY_MESSAGES), 240, f"{MANY_MESSAGES} chat posts")
    assert_exactly_once(b24_sim, tag, MANY_MESSAGES)
    for _, phone, _ in people:
        assert len(contacts_with_phone(b24_sim, str(phone))) == 1, f"contact for {phone} not unique"
    counts = [
        wait_until(lambda p=p: p.status(module_redis), 10, "status")["enqueued"] for p in (first, second)
    ]
    assert all(c > 0 for c in counts), f"one process did all the work: {counts}"


def test_kill_9_mid_stream_then_restart_loses_nothing_and_posts_once(
    lane: Lane,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    stack_env: dict[str, str],
    ingest_factory: Callable[..., IngestProcess],
) -> None:
    bootstrap, topic = lane.bootstrap, lane.topic
    people = subscribers(rd_sim, 10)
    tag = f"kill{uuid.uuid4().hex[:6]}"
    batch = payloads(people, tag, 120)
    ingest = ingest_factory(lane)
    ingest.wait_assigned(module_redis)
    produce(bootstrap, topic, batch[:60], partitions=PARTITIONS)
    wait_until(lambda: len(posts_by_tag(b24_sim, tag)) >= 5, 60, "first posts")
    ingest.kill()  # SIGKILL: no commit, no leave-group; the uncommitted tail is read again
    produce(bootstrap, topic, batch[60:], partitions=PARTITIONS)
    restarted = ingest_factory(lane)
    wait_until(all_posted(b24_sim, tag, len(batch)), 180, "every message posted after restart")
    assert_exactly_once(b24_sim, tag, len(batch))
    assert restarted.running


def test_poison_records_go_to_dead_letter_topic_and_consumer_moves_on(
    lane: Lane,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    stack_env: dict[str, str],
    ingest_factory: Callable[..., IngestProcess],
) -> None:
    bootstrap, topic = lane.bootstrap, lane.topic
    abonent_id, phone, company_id = subscribers(rd_sim, 1)[0]
    tag = f"dlq{uuid.uuid4().hex[:6]}"
    poison = {
        "not json": b"{oops",
        "wrong shape": b'{"fromAbonent": "nobody"}',
        "no phone": subscriber_payload(abonent_id, 0, company_id, f"[{tag}:99]"),
        "array": b"[1, 2, 3]",
    }
    values = [*poison.values(), subscriber_payload(abonent_id, phone, company_id, f"после мусора [{tag}:0]")]
    offsets = produce(bootstrap, topic, values, partitions=1)  # all on partition 0, in order
    ingest_factory(lane)
    wait_until(all_posted(b24_sim, tag, 1), 60, "the valid record after the poison ones")

    reader = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"dlq-reader-{tag}", "auto.offset.reset": "earliest"}
    )
    reader.assign([TopicPartition(f"{topic}.DLQ", 0, 0)])
    found: dict[int, Any] = {}
    poison_offsets = {offset for _, offset in offsets[: len(poison)]}

    def read_dlq() -> bool:
        msg = reader.poll(0.2)
        if msg is not None and msg.error() is None:
            headers = {k: v.decode() for k, v in msg.headers() or []}
            if headers.get(dlq.H_TOPIC) == topic and int(headers[dlq.H_OFFSET]) in poison_offsets:
                found[int(headers[dlq.H_OFFSET])] = (msg.value(), headers)
        return len(found) == len(poison)

    try:
        wait_until(read_dlq, 30, "every poison record in the dead-letter topic")
    finally:
        reader.close()
    for (name, value), (_, offset) in zip(poison.items(), offsets, strict=False):
        dead_value, headers = found[offset]
        assert dead_value == value, name
        assert headers[dlq.H_PARTITION] == "0"
        assert headers[dlq.H_ERROR_CLASS] == "PoisonRecordError", name
        assert headers[dlq.H_ERROR], name
    assert "no sender phone" in found[offsets[2][1]][1][dlq.H_ERROR]
    stored = [
        letter
        for letter in module_redis.hvals("rdb24:dlq:items")
        if f'"offset":{offsets[0][1]}' in letter.replace(" ", "")
    ]
    assert stored, "the dead letter is not listed in the Redis store (rdb24 dlq list)"
    assert_exactly_once(b24_sim, tag, 1)


def test_sigterm_finishes_commits_and_exits_zero(
    lane: Lane,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    stack_env: dict[str, str],
    ingest_factory: Callable[..., IngestProcess],
) -> None:
    bootstrap, topic = lane.bootstrap, lane.topic
    tag = f"term{uuid.uuid4().hex[:6]}"
    port = embedded.free_port()
    ingest = ingest_factory(lane, INGEST_METRICS_PORT=str(port), INGEST_COMMIT_GRACE="0")
    ingest.wait_assigned(module_redis)
    sent = produce(bootstrap, topic, payloads(subscribers(rd_sim, 5), tag, 30), partitions=PARTITIONS)
    ends = {p: max(o for q, o in sent if q == p) + 1 for p in range(PARTITIONS)}
    wait_until(lambda: (ingest.status(module_redis) or {}).get("consumed", 0) >= 30, 60, "records consumed")
    metrics = wait_until(
        lambda: (text := _scrape(port)) and "rdb24_ingest_consumer_lag{" in text and text, 30, "lag metric"
    )
    assert f'rdb24_ingest_records_consumed_total{{topic="{topic}"}} 30.0' in metrics
    assert f'rdb24_ingest_chains_enqueued_total{{topic="{topic}"}} 30.0' in metrics
    assert "rdb24_ingest_paused 0.0" in metrics
    # Offsets wait for the posts (tasks/ingest/settlement.py); once every message is posted, SIGTERM
    # commits them all.
    wait_until(all_posted(b24_sim, tag, 30), 60, "posts")
    wait_until(lambda: (ingest.status(module_redis) or {}).get("unsettled") == 0, 30, "all settled")
    assert ingest.terminate(timeout=25) == 0, ingest.logs()[-3000:]
    assert committed_offsets(bootstrap, lane.group, topic) == ends, ingest.logs()[-3000:]
    assert_exactly_once(b24_sim, tag, 30)


def test_reply_task_reaches_subscriber_history_through_messages_out(
    rd_sim: RosDomofonSimulator, worker: CeleryWorker, celery_app: Any
) -> None:
    abonent_id, phone, _ = subscribers(rd_sim, 1)[0]
    text = f"Ответ оператора {uuid.uuid4().hex[:6]}"
    result = celery_app.send_task(
        "rosdomofon.kafka_send_message",
        kwargs={"to_abonent_id": abonent_id, "to_abonent_phone": phone, "message": text},
    ).get(timeout=60)
    assert result["topic"] == f"MESSAGES_OUT_{rd_sim.company}"
    wait_until(
        lambda: [m for m in rd_sim.history(abonent_id) if m.text == text and not m.incoming], 30, "reply"
    )
    many = celery_app.send_task(
        "rosdomofon.kafka_send_message_to_multiple",
        kwargs={"to_abonents": [{"id": abonent_id, "phone": phone}], "message": text + " (всем)"},
    ).get(timeout=60)
    assert many["recipients"] == 1


# --- broker restart: a dedicated Tansu whose data and offsets live in S3 (moto) --------------------------


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[embedded.EmbeddedServer]:
    import boto3

    port = embedded.free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        embedded.wait_for_port("127.0.0.1", port, proc=moto)
        endpoint = f"http://127.0.0.1:{port}"
        env = {
            "AWS_ENDPOINT": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "eu-west-2",
        }
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="eu-west-2",
        ).create_bucket(Bucket="tansu", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        broker = embedded.tansu(storage="s3://tansu/", env=env).start()
        try:
            yield broker
        finally:
            broker.stop()
    finally:
        moto.terminate()
        moto.wait(10)


def test_broker_restart_ingest_reconnects_without_restart(
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    stack_env: dict[str, str],
    durable_broker: embedded.EmbeddedServer,
    ingest_factory: Callable[..., IngestProcess],
) -> None:
    bootstrap = f"{durable_broker.host}:{durable_broker.port}"
    # Its own topic name: message ids are topic:partition:offset, so reusing another test's topic name
    # on this second broker would make these records look already handled (and rightly be skipped).
    lane = Lane(f"{stack_env['COMPANY_SHORT_NAME']}b{uuid.uuid4().hex[:6]}", bootstrap)
    topic = lane.topic
    create_topics(bootstrap, topic, partitions=PARTITIONS)
    people = subscribers(rd_sim, 5)
    tag = f"brk{uuid.uuid4().hex[:6]}"
    batch = payloads(people, tag, 40)
    ingest = ingest_factory(lane, KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    ingest.wait_assigned(module_redis)
    produce(bootstrap, topic, batch[:20], partitions=PARTITIONS)
    wait_until(lambda: len(posts_by_tag(b24_sim, tag)) >= 20, 60, "first half posted")

    seen = len(ingest.logs())
    durable_broker.stop()
    wait_until(lambda: _saw_disconnect(ingest.logs()[seen:]), 60, "the ingest worker noticed the outage")
    durable_broker.start()
    produce(bootstrap, topic, batch[20:], partitions=PARTITIONS)
    wait_until(all_posted(b24_sim, tag, len(batch)), 120, "second half posted after the broker came back")
    assert ingest.running, "the ingest process had to be restarted"
    assert_exactly_once(b24_sim, tag, len(batch))


def _saw_disconnect(logs: str) -> bool:
    return any(
        word in logs for word in ("Connection refused", "Disconnected", "brokers are down", "_TRANSPORT")
    )
