"""``rdb24 dlq replay`` of a message chain's step runs the rest of the chain: the message is posted once
and leaves the in-flight ledger (real worker, Redis, both simulators over HTTP, CRM chat mode)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon.server import RosDomofonSimulator
from schemas.dead_letters import DeadLetter
from tasks.flows.incoming_message import enqueue_incoming_message
from tasks.replay import replay
from tasks.state import inflight
from tasks.state.dead_letters import DeadLetterStore
from tests.support.celery_worker import CeleryWorker
from tests.support.flow_tasks import queues_drained
from tests.support.kafka_records import incoming
from tests.support.simulators import crm_chat_env, posts_of, rosdomofon_env, subscriber_without_account
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def worker(
    module_redis_url: str,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    celery_worker_factory: Callable[..., CeleryWorker],
) -> Iterator[CeleryWorker]:
    # One retry only: an outage outlives the retry budget within a second.
    env = {**rosdomofon_env(rd_sim), **crm_chat_env(b24_sim), "REDIS_URL": module_redis_url}
    env["MAX_RETRIES"] = "1"
    started = celery_worker_factory(env)
    yield started
    started.stop()


@pytest.fixture
def letters(module_redis: redis.Redis) -> DeadLetterStore:
    return DeadLetterStore(module_redis)


def dead_letter_of(letters: DeadLetterStore, task_name: str, message_id: str) -> DeadLetter:
    def found() -> DeadLetter | None:
        for letter in letters.list(limit=max(letters.count(), 1), name=task_name):
            if letter.source.get("message_id") == message_id:
                return letter
        return None

    return wait_until(found, message=f"{task_name} dead-lettered")


def assert_posted_once_and_settled(
    sim: Bitrix24Simulator, client: redis.Redis, text: str, message_id: str
) -> None:
    wait_until(lambda: posts_of(sim, text), message="message posted after the replay")
    wait_until(lambda: queues_drained(client), message="queues drained")
    assert len(posts_of(sim, text)) == 1
    assert not client.zscore(inflight.LEDGER_KEY, message_id), "replayed message left in the ledger"


def outage_dead_letters(
    step: str,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    letters: DeadLetterStore,
    module_redis: redis.Redis,
    unique: str,
    phone: int,
) -> tuple[DeadLetter, str, str]:
    """A message whose ``step`` ran out of retries in an outage, the outage over; (letter, id, text)."""
    abonent_id, phone = subscriber_without_account(rd_sim, phone)
    message_id, text = f"MESSAGES_IN_SK_SB:0:replay-{step}-{unique}", f"после сбоя {step} {unique}"
    if step == "lookup":  # the phone is not in the index: the lookup asks RosDomofon, which is down
        rd_sim.faults.update(fail_next=1000, fail_status=503)
        task_name = "flows.lookup_account"
    else:  # Bitrix24 cannot be asked for the contact
        b24_sim.inject("error", method="crm.duplicate.findbycomm", status=503, code="")
        task_name = "bitrix24.find_or_create_contact"
    try:
        enqueue_incoming_message(incoming(abonent_id, phone, text), message_id, sent_at=1_760_000_000.5)
        letter = dead_letter_of(letters, task_name, message_id)
    finally:
        rd_sim.faults.clear()
        b24_sim.faults.clear()
    wait_until(lambda: queues_drained(module_redis), message="queues drained")
    assert posts_of(b24_sim, text) == []
    assert module_redis.zscore(inflight.LEDGER_KEY, message_id) is None  # dead letter settled it
    return letter, message_id, text


@pytest.mark.parametrize("step", ["lookup", "contact"])
def test_replaying_a_dead_lettered_step_posts_the_message_once(
    step: str,
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    letters: DeadLetterStore,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    phone = 79990001000 + (1 if step == "lookup" else 2) + int(unique[:4], 16) % 500 * 10
    letter, message_id, text = outage_dead_letters(
        step, rd_sim, b24_sim, letters, module_redis, unique, phone
    )

    replay(letters, letter.id)

    assert_posted_once_and_settled(b24_sim, module_redis, text, message_id)
    with pytest.raises(KeyError):
        letters.get(letter.id)


class InterruptedOnce(DeadLetterStore):
    """The store as a replay killed by Ctrl-C sees it: the publish went out, the delete never ran."""

    interrupted = False

    def delete(self, letter_id: str) -> bool:
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return super().delete(letter_id)


def test_a_replay_interrupted_before_deleting_the_letter_and_run_again_posts_once(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    letters: DeadLetterStore,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    phone = 79990005003 + int(unique[:4], 16) % 500 * 10
    letter, message_id, text = outage_dead_letters(
        "contact", rd_sim, b24_sim, letters, module_redis, unique, phone
    )
    interrupted = InterruptedOnce(module_redis)
    with pytest.raises(KeyboardInterrupt):
        replay(interrupted, letter.id)
    assert interrupted.get(letter.id).id == letter.id  # the letter is still there

    replay(interrupted, letter.id)  # the operator runs it again at once: both replays are in flight

    assert_posted_once_and_settled(b24_sim, module_redis, text, message_id)
