"""Batched posts and contacts (issue 15): many subscribers' messages in one ``imconnector.send.messages``,
new subscribers' contacts in one ``batch``, exactly once and in order per subscriber, through a real
worker, real Redis and both simulators over HTTP (OAuth app configured: Open Lines)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon.server import RosDomofonSimulator
from tasks.flows.incoming_message import enqueue_incoming_message
from tasks.state import inflight, outbox
from tests.support.celery_worker import CeleryWorker
from tests.support.kafka_records import incoming
from tests.support.simulators import (
    contacts_with_phone,
    openlines_env,
    posts_of,
    rosdomofon_env,
    subscriber_with_account,
)
from tests.support.waiting import wait_result, wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.process]

CLIENT_TIMEOUT = 2.0  # seconds; the "commit then time out" portal answers later than this


@pytest.fixture(scope="module")
def worker(
    module_redis_url: str,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    celery_worker_factory: Callable[..., CeleryWorker],
) -> Iterator[CeleryWorker]:
    env = {
        **rosdomofon_env(rd_sim),
        **openlines_env(b24_sim, "http://127.0.0.1:9"),
        "REDIS_URL": module_redis_url,
        "BITRIX24_TIMEOUT": str(CLIENT_TIMEOUT),
        "POST_BATCH_WINDOW": "0.3",
        "POST_BATCH_SIZE": "100",
        "CONTACT_BATCH_WINDOW": "0.3",
    }
    started = celery_worker_factory(env, concurrency=8)
    yield started
    started.stop()


def _calls(sim: Bitrix24Simulator, method: str) -> list[dict[str, Any]]:
    """HTTP requests of ``method`` (not the commands inside a ``batch``)."""
    with sim.portal.lock:
        return [c for c in sim.portal.calls if c["method"] == method and c["batch"] is None]


def _send_round(rd_sim: RosDomofonSimulator, subscribers: list[int], unique: str, round_no: int) -> list[str]:
    """One message from each subscriber; returns their texts once every post step has queued them."""
    texts, task_ids = [], []
    for index in subscribers:
        abonent_id, phone, _ = subscriber_with_account(rd_sim, index)
        text = f"{unique} s{index} r{round_no}"
        message_id = f"MESSAGES_IN_SK_SB:{index}:{unique}-{round_no}"
        task_ids.append(enqueue_incoming_message(incoming(abonent_id, phone, text), message_id))
        texts.append(text)
    for task_id in task_ids:
        wait_result(task_id)
    return texts


def test_outbox_takes_one_message_per_subscriber_oldest_first(module_redis: redis.Redis) -> None:
    def item(message_id: str, abonent_id: int) -> outbox.OutboxItem:
        return outbox.OutboxItem(message_id=message_id, abonent_id=abonent_id, payload={})

    module_redis.delete(outbox.ITEMS_KEY, outbox.READY_KEY)
    a1, a2, b1 = item("t:0:1", 901), item("t:0:2", 901), item("t:0:3", 902)
    assert outbox.add(module_redis, a1) and outbox.add(module_redis, a2) and outbox.add(module_redis, b1)
    assert not outbox.add(module_redis, a1), "a redelivered post step must not queue its message twice"
    assert [i.message_id for i in outbox.heads(module_redis, 10)] == ["t:0:1", "t:0:3"]
    outbox.remove(module_redis, a1)
    # a2 arrived before b1, so subscriber 901 now waited longest again.
    assert [i.message_id for i in outbox.heads(module_redis, 10)] == ["t:0:2", "t:0:3"]
    assert [i.message_id for i in outbox.heads(module_redis, 1)] == ["t:0:2"]
    outbox.remove(module_redis, a2)
    outbox.remove(module_redis, b1)
    assert outbox.heads(module_redis, 10) == [] and outbox.waiting(module_redis) == 0


def test_many_subscribers_share_requests_exactly_once_and_in_order(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    subscribers = list(range(8))
    sends_before = len(_calls(b24_sim, "imconnector.send.messages"))
    adds_before = len(_calls(b24_sim, "crm.contact.add"))
    rounds = [_send_round(rd_sim, subscribers, unique, r) for r in range(3)]
    texts = [t for texts in rounds for t in texts]
    wait_until(lambda: all(posts_of(b24_sim, t) for t in texts), 60, "every message posted")
    wait_until(lambda: outbox.waiting(module_redis) == 0, 10, "the outbox empty")

    for text in texts:
        assert len(posts_of(b24_sim, text)) == 1, f"{text!r} posted other than once"
    for index in subscribers:
        _, phone, _ = subscriber_with_account(rd_sim, index)
        mine = [m["text"] for m in posts_of(b24_sim, f"{unique} s{index} ")]
        order = [next(r for r in range(3) if f"r{r}" in text) for text in mine]
        assert order == [0, 1, 2], f"subscriber {index}'s messages arrived as rounds {order}"
        assert len(contacts_with_phone(b24_sim, str(phone))) == 1
    sends = len(_calls(b24_sim, "imconnector.send.messages")) - sends_before
    assert sends <= len(texts) // 2, f"{sends} send.messages requests for {len(texts)} messages"
    # Contacts went in batches: no one-by-one crm.contact.add request for these new subscribers.
    assert len(_calls(b24_sim, "crm.contact.add")) == adds_before
    assert not inflight.count(module_redis)


def test_a_refused_element_is_retried_alone(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    b24_sim.inject("refuse_element", match=f"{unique} s9 ", count=2)
    texts = _send_round(rd_sim, [8, 9, 10], unique, 0)
    wait_until(lambda: all(posts_of(b24_sim, t) for t in texts), 60, "every message posted")
    wait_until(lambda: outbox.waiting(module_redis) == 0, 10, "the outbox empty")
    for text in texts:
        assert len(posts_of(b24_sim, text)) == 1, f"{text!r} posted other than once"
    assert not b24_sim.portal.refused_texts, "the refusals were consumed: the element was re-sent"


def test_commit_then_timeout_on_a_batched_send_posts_each_once(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    subscribers = [0, 1, 2]  # their dialogs exist (first test): the check reads CONNECTOR_MID
    _send_round(rd_sim, subscribers, f"{unique}-warm", 0)
    wait_until(lambda: outbox.waiting(module_redis) == 0, 30, "the warm-up posted")
    b24_sim.inject(
        "commit_then_timeout", method="imconnector.send.messages", count=1, seconds=CLIENT_TIMEOUT + 1
    )
    texts = _send_round(rd_sim, subscribers, unique, 0)
    wait_until(lambda: all(posts_of(b24_sim, t) for t in texts), 60, "every message posted")
    wait_until(lambda: outbox.waiting(module_redis) == 0, 30, "the outbox empty")
    for text in texts:
        assert len(posts_of(b24_sim, text)) == 1, f"{text!r} posted other than once"
