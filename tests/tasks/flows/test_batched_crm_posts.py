"""Batched posts in CRM-chat mode (webhook-only portals): many subscribers' messages go out as one
``batch`` of ``im.message.add``, each command's result checked, exactly once and in order."""

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
from tests.support.simulators import crm_chat_env, posts_of, rosdomofon_env, subscriber_with_account
from tests.support.waiting import wait_result, wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.process]


@pytest.fixture(scope="module")
def worker(
    module_redis_url: str,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    celery_worker_factory: Callable[..., CeleryWorker],
) -> Iterator[CeleryWorker]:
    env = {
        **rosdomofon_env(rd_sim),
        **crm_chat_env(b24_sim),
        "REDIS_URL": module_redis_url,
        "POST_BATCH_WINDOW": "0.3",
        "CONTACT_BATCH_WINDOW": "0.3",
    }
    started = celery_worker_factory(env, concurrency=8)
    yield started
    started.stop()


def _inner(sim: Bitrix24Simulator, method: str) -> list[dict[str, Any]]:
    with sim.portal.lock:
        return [c for c in sim.portal.calls if c["method"] == method]


def test_crm_chat_posts_go_in_one_batch_per_round(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    texts: list[str] = []
    for round_no in range(2):
        task_ids = []
        for index in range(5):
            abonent_id, phone, _ = subscriber_with_account(rd_sim, index)
            text = f"{unique} s{index} r{round_no}"
            message_id = f"MESSAGES_IN_SK_SB:{index}:{unique}-{round_no}"
            task_ids.append(enqueue_incoming_message(incoming(abonent_id, phone, text), message_id))
            texts.append(text)
        for task_id in task_ids:
            assert wait_result(task_id)["mode"] == "crm_chat"
    wait_until(lambda: all(posts_of(b24_sim, t) for t in texts), 60, "every message posted")
    wait_until(lambda: outbox.waiting(module_redis) == 0, 10, "the outbox empty")
    for text in texts:
        assert len(posts_of(b24_sim, text)) == 1, f"{text!r} posted other than once"
    for index in range(5):
        mine = [m["text"] for m in posts_of(b24_sim, f"{unique} s{index} ")]
        assert [f"r{r}" in t for r, t in enumerate(mine)] == [True, True], mine
    posts = _inner(b24_sim, "im.message.add")
    assert posts and all(c["batch"] is not None for c in posts), "posts went through batch"
    assert not inflight.count(module_redis)
