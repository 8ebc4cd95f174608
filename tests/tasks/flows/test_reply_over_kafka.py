"""Operator reply over Kafka ``MESSAGES_OUT_<company>`` (``REPLY_TRANSPORT=kafka``): the simulator's
subscriber app consumes the topic and records the message in the subscriber's history."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon.server import RosDomofonSimulator
from sandbox.stack.embedded import free_port
from tasks.flows.incoming_message import enqueue_incoming_message
from tests.support.celery_worker import CeleryWorker
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
