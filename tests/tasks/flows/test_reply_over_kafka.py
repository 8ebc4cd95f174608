"""Operator reply over Kafka ``MESSAGES_OUT_<company>`` (``REPLY_TRANSPORT=kafka``): the simulator's
subscriber app consumes the topic and records the message in the subscriber's history."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from clients.kafka import KafkaConfig, RosDomofonKafkaClient
from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.bitrix24.messaging import operator_message
from sandbox.rosdomofon.server import RosDomofonSimulator
from sandbox.stack.embedded import free_port
from schemas.flows import OperatorReplyPayload
from tasks.flows.incoming_message import enqueue_incoming_message
from tasks.flows.operator_reply import KAFKA_SETTLE, SEND_STEP, reply_key
from tasks.flows.texts import strip_bbcodes
from tasks.state import effects, inflight, reply_sends
from tests.support.celery_worker import CeleryWorker
from tests.support.flow_tasks import resend_stalled
from tests.support.kafka_records import incoming
from tests.support.simulators import openlines_env, rosdomofon_env, subscriber_with_account
from tests.support.waiting import wait_result, wait_until
from tests.support.webhook_process import WebhookServer, start_webhook

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]
COMPANY = "FLOWS_REPLY_SB"


@pytest.fixture(scope="module")
def rd_sim(kafka_bootstrap: str) -> Iterator[RosDomofonSimulator]:
    sim = RosDomofonSimulator(accounts=4, seed=11, company=COMPANY, kafka_bootstrap=kafka_bootstrap).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def flow_env(
    module_redis_url: str,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    worker_base_env: dict[str, str],
    kafka_bootstrap: str,
) -> dict[str, str]:
    port = free_port()
    return {
        **worker_base_env,
        **rosdomofon_env(rd_sim),
        **openlines_env(b24_sim, f"http://127.0.0.1:{port}"),
        "REDIS_URL": module_redis_url,
        "WEBHOOK_PORT": str(port),
        "REPLY_TRANSPORT": "kafka",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }


@pytest.fixture(scope="module")
def webhook(flow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookServer]:
    server = start_webhook(
        flow_env, tmp_path_factory.mktemp("webhook") / "webhook.log", int(flow_env["WEBHOOK_PORT"])
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(
    flow_env: dict[str, str], webhook: WebhookServer, celery_worker_factory: Callable[..., CeleryWorker]
) -> Iterator[CeleryWorker]:
    started = celery_worker_factory(flow_env)
    yield started
    started.stop()


def test_operator_reply_goes_out_over_kafka(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 0)
    wait_result(
        enqueue_incoming_message(incoming(abonent_id, phone, f"Кафка {unique}"), f"MESSAGES_IN_X:0:{unique}")
    )
    outcome = b24_sim.operator_reply(f"[b]Ответ[/b] {unique}", external_chat_id=f"abonent-{abonent_id}")
    assert outcome["deliveries"][0]["status"] == 200, outcome

    def out_messages() -> list[Any]:
        return [m for m in rd_sim.history(abonent_id, "support") if not m.incoming and unique in m.text]

    sent = wait_until(out_messages, message="reply consumed from MESSAGES_OUT")
    assert len(sent) == 1 and sent[0].source == "kafka-out"
    assert sent[0].text.endswith(f"Ответ {unique}") and "[b]" not in sent[0].text
    assert rd_sim.kafka is not None
    assert [r["delivered_to"] for r in rd_sim.kafka.out_records if "rejected" not in r] == [[abonent_id]]


def test_reply_whose_kafka_send_went_out_before_a_crash_is_not_sent_again(
    worker: CeleryWorker,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    kafka_bootstrap: str,
    unique: str,
) -> None:
    """Issue 14.7: a worker died after producing to MESSAGES_OUT and before recording it. The retry
    looks the subscriber's history up like a REST reply does, and finds its own send by a new id
    although an earlier reply with the very same text is there too."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 1)
    wait_result(
        enqueue_incoming_message(incoming(abonent_id, phone, f"Вопрос {unique}"), f"MESSAGES_IN_X:1:{unique}")
    )
    first = b24_sim.operator_reply(f"Спасибо {unique}", external_chat_id=f"abonent-{abonent_id}")
    assert first["deliveries"][0]["status"] == 200, first

    def thanks() -> list[Any]:
        return [m for m in rd_sim.history(abonent_id, "support") if not m.incoming and unique in m.text]

    wait_until(lambda: len(thanks()) == 1, message="the first reply consumed from MESSAGES_OUT")
    chats = b24_sim.openlines()["chats"]
    (chat,) = [c for name, c in chats.items() if name.endswith(f"|abonent-{abonent_id}")]
    stored = operator_message(b24_sim.portal, chat["chat_id"], f"Спасибо {unique}", 1, "Operator")["message"]
    reply = OperatorReplyPayload(
        connector=chat["connector"],
        line=chat["line"],
        chat_id=chat["external_chat_id"],
        im_chat_id=chat["chat_id"],
        im_message_id=stored["id"],
        text=stored["text"],
    )
    key = reply_key(reply)
    # The crashed attempt, step by step as the task takes them: note the history, mark started, produce.
    before = [str(m.id) for m in rd_sim.history(abonent_id, "support") if not m.incoming]
    reply_sends.remember_seen(module_redis, key, before, ttl=3600)
    effects.mark_started(module_redis, key, SEND_STEP)
    producer = RosDomofonKafkaClient(
        config=KafkaConfig(bootstrap_servers=kafka_bootstrap, company_short_name=COMPANY)
    )
    try:
        producer.send_message(abonent_id, phone, strip_bbcodes(stored["text"]))
    finally:
        producer.close()
    crashed_send = wait_until(
        lambda: len(thanks()) == 2 and thanks()[0], message="the crashed attempt's record"
    )
    # Its task message is redelivered (here: by the in-flight ledger's sweep).
    inflight.track(module_redis, key, inflight.REPLY, reply)
    assert key in resend_stalled()["resent"]
    result = wait_result(key)
    assert result["transport"] == "kafka" and result["delivery_reported"]
    assert result["rosdomofon_message_id"] == crashed_send.id  # recognised, not produced again
    time.sleep(2)  # a second record would have been consumed by now
    assert len(thanks()) == 2  # not a third "Спасибо"


def test_interrupted_kafka_reply_that_never_went_out_is_sent_once_after_the_settle_time(
    worker: CeleryWorker,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """The crashed attempt died before its produce: the history never shows it. The retry gives a
    record in flight KAFKA_SETTLE seconds to appear, then sends, once."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 2)
    wait_result(
        enqueue_incoming_message(incoming(abonent_id, phone, f"Ау {unique}"), f"MESSAGES_IN_X:2:{unique}")
    )
    chats = b24_sim.openlines()["chats"]
    (chat,) = [c for name, c in chats.items() if name.endswith(f"|abonent-{abonent_id}")]
    stored = operator_message(b24_sim.portal, chat["chat_id"], f"Секунду {unique}", 1, "Operator")["message"]
    reply = OperatorReplyPayload(
        connector=chat["connector"],
        line=chat["line"],
        chat_id=chat["external_chat_id"],
        im_chat_id=chat["chat_id"],
        im_message_id=stored["id"],
        text=stored["text"],
    )
    key = reply_key(reply)
    before = [str(m.id) for m in rd_sim.history(abonent_id, "support") if not m.incoming]
    reply_sends.remember_seen(module_redis, key, before, ttl=3600)
    effects.mark_started(module_redis, key, SEND_STEP)  # and then it died, nothing produced
    marker = effects.recall(module_redis, key, SEND_STEP)
    assert marker is not None
    attempt_at = marker.at  # the settle time runs from the interrupted attempt, as the task counts it
    inflight.track(module_redis, key, inflight.REPLY, reply)
    assert key in resend_stalled()["resent"]
    result = wait_result(key, timeout=60)
    assert time.time() - attempt_at >= KAFKA_SETTLE - 2  # it waited for a record in flight
    assert str(result["rosdomofon_message_id"]).startswith(f"MESSAGES_OUT_{COMPANY}:")  # produced now

    def sent() -> list[Any]:
        return [m for m in rd_sim.history(abonent_id, "support") if not m.incoming and unique in m.text]

    wait_until(lambda: len(sent()) == 1, message="the reply consumed")
    time.sleep(2)
    assert len(sent()) == 1
