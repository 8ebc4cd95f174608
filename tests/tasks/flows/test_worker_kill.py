"""kill -9 of the worker while a chain step's Bitrix24 call is in flight: after a restart the chain
completes with no duplicate contact or chat post.

The simulator holds the call (latency fault) and commits it after the worker is dead, the worst case:
the side effect happened but the worker never saw the answer. The late-acked message is redelivered
once the visibility timeout (10 s here, the same for the restarted worker) has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon.server import RosDomofonSimulator
from tasks.flows.incoming_message import enqueue_incoming_message
from tests.support.celery_worker import CeleryWorker
from tests.support.kafka_records import incoming
from tests.support.simulators import (
    contacts_with_phone,
    crm_chat_env,
    posts_of,
    rosdomofon_env,
    subscriber_with_account,
)
from tests.support.waiting import wait_result, wait_until

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

VISIBILITY_TIMEOUT = 10
LATENCY = 4.0


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
        "VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
    }
    started = celery_worker_factory(env)
    yield started
    started.stop()


def _kill_while_in_flight(worker: CeleryWorker, sim: Bitrix24Simulator, method: str) -> None:
    """Wait until ``method`` is being held by the simulator, SIGKILL the worker, restart it later."""
    wait_until(lambda: not sim.faults.listing(), timeout=60, message=f"{method} in flight")
    worker.kill()
    killed_at = time.monotonic()
    # Let the held call commit, and the unacked message become visible again, then start anew:
    # the new worker restores messages older than the visibility timeout as it starts polling.
    time.sleep(max(LATENCY, VISIBILITY_TIMEOUT + 1) - (time.monotonic() - killed_at))
    worker.start()


def test_kill_during_contact_creation(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 6)
    b24_sim.inject("latency", method="crm.contact.add", seconds=LATENCY, count=1)
    task_id = enqueue_incoming_message(
        incoming(abonent_id, phone, f"kill {unique}"), f"MESSAGES_IN_SK_SB:0:{unique}"
    )
    _kill_while_in_flight(worker, b24_sim, "crm.contact.add")
    result = wait_result(task_id, timeout=90)
    contacts = contacts_with_phone(b24_sim, str(phone))
    assert len(contacts) == 1 and result["contact_id"] == int(contacts[0]["ID"])
    assert len(posts_of(b24_sim, unique)) == 1


def test_kill_during_chat_post(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 7)
    b24_sim.inject("latency", method="im.message.add", seconds=LATENCY, count=1)
    task_id = enqueue_incoming_message(
        incoming(abonent_id, phone, f"kill {unique}"), f"MESSAGES_IN_SK_SB:0:{unique}"
    )
    reads_before = b24_sim.portal.call_counts().get("im.dialog.messages.get", 0)
    _kill_while_in_flight(worker, b24_sim, "im.message.add")
    wait_result(task_id, timeout=90)
    assert len(contacts_with_phone(b24_sim, str(phone))) == 1
    assert len(posts_of(b24_sim, unique)) == 1
    # The redelivered step found its committed post by reading the chat, instead of posting again.
    assert b24_sim.portal.call_counts().get("im.dialog.messages.get", 0) > reads_before
