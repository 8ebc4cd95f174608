"""Subscriber message -> Open Lines, and the operator's reply back, through a real worker, a real
webhook receiver process, real Redis and both simulators over HTTP (OAuth app configured: Open Lines)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from threading import Thread
from typing import Any

import pytest
import redis
import requests

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.bitrix24.events import build_payload
from sandbox.bitrix24.forms import encode
from sandbox.bitrix24.messaging import operator_message
from sandbox.rosdomofon.server import RosDomofonSimulator
from sandbox.stack.embedded import free_port
from schemas.flows import OperatorReplyPayload
from tasks.flows.incoming_message import enqueue_incoming_message
from tasks.flows.operator_reply import PART_STEP, SEND_STEP, enqueue_operator_reply, reply_key, reply_text
from tasks.flows.reply_parts import split_reply
from tasks.flows.texts import NO_ACCOUNT, WORD_JOINER, inert
from tasks.state import effects, inflight, reply_order
from tests.support.celery_worker import CeleryWorker
from tests.support.flow_tasks import queues_drained, resend_stalled
from tests.support.kafka_records import incoming
from tests.support.simulators import (
    contacts_with_phone,
    openlines_env,
    posts_of,
    rosdomofon_env,
    subscriber_with_account,
    subscriber_without_account,
)
from tests.support.waiting import wait_result, wait_until
from tests.support.webhook_process import WebhookServer, start_webhook

pytestmark = [pytest.mark.timeout(180), pytest.mark.process]

CLIENT_TIMEOUT = 2.0  # seconds; the "commit then time out" test's portal answers later than this
REPLY_MAX_LENGTH = 300  # characters per RosDomofon message, so a long reply test stays small
ORDER_WAIT = 6.0  # seconds a reply waits for an earlier one of its dialog


@pytest.fixture(scope="module")
def flow_env(
    module_redis_url: str,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    worker_base_env: dict[str, str],
) -> dict[str, str]:
    port = free_port()
    env = {
        **worker_base_env,
        **rosdomofon_env(rd_sim),
        **openlines_env(b24_sim, f"http://127.0.0.1:{port}"),
        "REDIS_URL": module_redis_url,
        "WEBHOOK_PORT": str(port),
        "BITRIX24_TIMEOUT": str(CLIENT_TIMEOUT),
        "REPLY_MAX_LENGTH": str(REPLY_MAX_LENGTH),
        "OFFLINE_EVENTS_ENABLED": "true",  # only flows.poll_offline_events reads it; beat is not running
        "REPLY_ORDER_WAIT": str(ORDER_WAIT),
    }
    return env


@pytest.fixture(scope="module")
def webhook(flow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookServer]:
    log = tmp_path_factory.mktemp("webhook") / "webhook.log"
    server = start_webhook(flow_env, log, int(flow_env["WEBHOOK_PORT"]))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(
    flow_env: dict[str, str], webhook: WebhookServer, celery_worker_factory: Callable[..., CeleryWorker]
) -> Iterator[CeleryWorker]:
    started = celery_worker_factory(flow_env)
    yield started
    started.stop()


def _openline_chat(sim: Bitrix24Simulator, abonent_id: int) -> dict[str, Any]:
    chats = sim.openlines()["chats"]
    found = [c for key, c in chats.items() if key.endswith(f"|abonent-{abonent_id}")]
    assert len(found) == 1, f"expected one Open Lines dialog for abonent {abonent_id}, got {len(found)}"
    return found[0]


def test_one_message_gives_one_contact_and_one_post(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone, account_id = subscriber_with_account(rd_sim, 0)
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    task_id = enqueue_incoming_message(incoming(abonent_id, phone, f"Нет звука {unique}"), message_id)
    assert task_id == f"msg:{message_id}:post"
    result = wait_result(task_id)
    assert result["mode"] == "openlines" and result["dialog_id"] == f"abonent-{abonent_id}"

    contacts = contacts_with_phone(b24_sim, str(phone))
    assert len(contacts) == 1
    assert contacts[0]["ORIGINATOR_ID"] == "rosdomofon" and contacts[0]["ORIGIN_ID"] == str(account_id)
    chat = _openline_chat(b24_sim, abonent_id)
    posted = [m for m in chat["messages"] if unique in m["text"]]
    assert len(posted) == 1 and posted[0]["external_id"] == message_id
    assert f"+{phone}" in posted[0]["text"] and "л/с" in posted[0]["text"]
    # The connector was set up once and bound to our webhook receiver.
    state = b24_sim.openlines()
    assert sorted(h["event"] for h in state["handlers"]) == ["ONAPPUNINSTALL", "ONIMCONNECTORMESSAGEADD"]


def test_redelivered_message_is_not_posted_twice(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 1)
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    message = incoming(abonent_id, phone, f"Дверь не открывается {unique}")
    wait_result(enqueue_incoming_message(message, message_id))

    # Kafka redelivery while the results are still known (Celery skips succeeded task ids)...
    enqueue_incoming_message(message, message_id)
    wait_until(lambda: queues_drained(module_redis), message="queues drained")
    # ...and after the results expired: only the effect markers stand between us and a duplicate.
    for key in module_redis.keys(f"celery-task-meta-msg:{message_id}:*"):
        module_redis.delete(key)
    again = wait_result(enqueue_incoming_message(message, message_id))
    assert again["message_id"] == message_id

    assert len(contacts_with_phone(b24_sim, str(phone))) == 1
    assert len(posts_of(b24_sim, unique)) == 1


def test_two_messages_at_once_from_a_new_subscriber_make_one_contact(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 2)
    ids: list[str] = []

    def send(n: int) -> None:
        ids.append(
            enqueue_incoming_message(
                incoming(abonent_id, phone, f"вопрос {n} {unique}"), f"MESSAGES_IN_SK_SB:{n}:{unique}"
            )
        )

    threads = [Thread(target=send, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    results = [wait_result(task_id) for task_id in ids]
    assert {r["contact_id"] for r in results} == {results[0]["contact_id"]}
    assert len(contacts_with_phone(b24_sim, str(phone))) == 1
    assert len(posts_of(b24_sim, unique)) == 2
    assert len(_openline_chat(b24_sim, abonent_id)["messages"]) == 2  # one subscriber = one dialog


def test_same_text_twice_with_a_503_on_the_second_post_gives_two_posts(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    """The retry after an ambiguous 503 recognises its own post by CONNECTOR_MID, not by text: the
    subscriber's earlier identical "да" must not be taken for the second one."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 4)
    text = f"да {unique}"
    first, second = f"MESSAGES_IN_SK_SB:0:{unique}", f"MESSAGES_IN_SK_SB:1:{unique}"
    wait_result(enqueue_incoming_message(incoming(abonent_id, phone, text), first))
    b24_sim.inject("error", method="imconnector.send.messages", count=1, status=503, code="")
    wait_result(enqueue_incoming_message(incoming(abonent_id, phone, text), second))
    assert not b24_sim.faults.listing()  # the 503 was served to the second post
    posted = [m for m in _openline_chat(b24_sim, abonent_id)["messages"] if unique in m["text"]]
    assert [m["external_id"] for m in posted] == [first, second]
    assert posted[0]["text"] == posted[1]["text"]


def test_first_message_of_a_new_dialog_committed_then_timed_out_is_posted_once(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    """The portal takes the very first message of a subscriber, but the answer carrying the new
    dialog's chat id is lost to a timeout. The retry finds the dialog through the contact's Open
    Lines chats (``imopenlines.crm.chat.get``) and its message by CONNECTOR_MID: no second post."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 5)
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    b24_sim.inject(
        "commit_then_timeout", method="imconnector.send.messages", count=1, seconds=CLIENT_TIMEOUT + 2
    )
    result = wait_result(
        enqueue_incoming_message(incoming(abonent_id, phone, f"первое {unique}"), message_id)
    )
    assert not b24_sim.faults.listing()  # the send did commit and time out
    chat = _openline_chat(b24_sim, abonent_id)
    assert [m["external_id"] for m in chat["messages"] if unique in m["text"]] == [message_id]
    assert result["chat_id"] == chat["chat_id"]


def test_subscriber_without_account_gets_a_marked_contact_and_post(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone = subscriber_without_account(rd_sim, 79990000000 + int(unique[:6], 16) % 1_000_000)
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    wait_result(
        enqueue_incoming_message(incoming(abonent_id, phone, f"Хочу подключиться {unique}"), message_id)
    )
    contacts = contacts_with_phone(b24_sim, str(phone))
    assert len(contacts) == 1
    assert NO_ACCOUNT in contacts[0]["COMMENTS"] and "ORIGIN_ID" not in {
        k for k, v in contacts[0].items() if v
    }
    posted = posts_of(b24_sim, unique)
    assert len(posted) == 1 and NO_ACCOUNT in posted[0]["text"]


def test_operator_reply_reaches_the_subscriber_and_is_marked_delivered(
    worker: CeleryWorker,
    webhook: WebhookServer,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 3)
    wait_result(
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"Алло {unique}"), f"MESSAGES_IN_SK_SB:0:{unique}"
        )
    )
    outcome = b24_sim.operator_reply(
        f"Здравствуйте, проверим {unique}",
        external_chat_id=f"abonent-{abonent_id}",
        operator_name="Иван Петров",
    )
    assert outcome["deliveries"] and outcome["deliveries"][0]["status"] == 200, outcome

    def reply_in_history() -> list[Any]:
        return [m for m in rd_sim.history(abonent_id, "support") if not m.incoming and unique in m.text]

    sent = wait_until(reply_in_history, message="reply in the subscriber's RosDomofon history")
    assert len(sent) == 1
    assert sent[0].text == f"Иван Петров:\nЗдравствуйте, проверим {unique}"  # BB codes stripped

    def delivered() -> bool:
        chat = _openline_chat(b24_sim, abonent_id)
        return any(m["id"] == outcome["message_id"] and m.get("delivered") for m in chat["messages"])

    wait_until(delivered, message="delivery status in the Open Line")
    key = f"reply:{outcome['chat_id']}:{outcome['message_id']}"
    wait_until(lambda: module_redis.zscore(inflight.LEDGER_KEY, key) is None, message="reply struck out")

    # The very same event POSTed again (a duplicate delivery) is accepted but not sent twice.
    with b24_sim.portal.lock:
        chat = b24_sim.portal.chats[outcome["chat_id"]]
        stored = next(m for m in chat["messages"] if m["id"] == outcome["message_id"])
        body = encode(build_payload(b24_sim.portal, b24_sim.url, chat, stored, 1))
    again = requests.post(
        f"{webhook.url}/bitrix24/events",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert again.status_code == 200
    wait_until(lambda: queues_drained(module_redis), message="queues drained")
    assert len(reply_in_history()) == 1


def test_operator_reply_whose_task_message_was_lost_is_resent_and_delivered_once(
    worker: CeleryWorker,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """The webhook recorded the reply in the in-flight ledger, then its task message vanished (kombu's
    fetch window under kill -9). Bitrix24 never sends the event again; the sweep resends the task."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 8)
    wait_result(
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"Есть кто? {unique}"), f"MESSAGES_IN_SK_SB:0:{unique}"
        )
    )
    chat = _openline_chat(b24_sim, abonent_id)
    stored = operator_message(b24_sim.portal, chat["chat_id"], f"Да, слушаю {unique}", 1, "Анна")["message"]
    reply = OperatorReplyPayload(
        connector=chat["connector"],
        line=chat["line"],
        chat_id=chat["external_chat_id"],
        im_chat_id=chat["chat_id"],
        im_message_id=stored["id"],
        text=stored["text"],
    )
    key = reply_key(reply)
    inflight.track(module_redis, key, inflight.REPLY, reply)

    assert key in resend_stalled()["resent"]
    wait_result(key)  # the reply task's id is its key

    def replies() -> list[Any]:
        return [m for m in rd_sim.history(abonent_id, "support") if not m.incoming and unique in m.text]

    assert len(wait_until(replies, message="the reply in the subscriber's history")) == 1
    assert module_redis.zscore(inflight.LEDGER_KEY, key) is None  # struck out once reported delivered
    after = _openline_chat(b24_sim, abonent_id)
    assert any(m["id"] == stored["id"] and m.get("delivered") for m in after["messages"])


def test_forged_token_is_refused_and_nothing_is_enqueued(
    worker: CeleryWorker, webhook: WebhookServer, module_redis: redis.Redis, unique: str
) -> None:
    chat_id, message_id = 900_000 + int(unique[:4], 16), 1
    form = {
        "event": "ONIMCONNECTORMESSAGEADD",
        "data[CONNECTOR]": "rosdomofon",
        "data[LINE]": "1",
        "data[MESSAGES][0][im][chat_id]": str(chat_id),
        "data[MESSAGES][0][im][message_id]": str(message_id),
        "data[MESSAGES][0][message][text]": "Hello",
        "data[MESSAGES][0][chat][id]": "abonent-1",
        "auth[application_token]": "forged-" + unique,
    }
    response = requests.post(f"{webhook.url}/bitrix24/events", data=form, timeout=10)
    assert response.status_code == 403
    task_id = f"reply:{chat_id}:{message_id}"
    assert not module_redis.exists(f"rdb24:reply:enqueued:{task_id}")
    assert not module_redis.exists(f"celery-task-meta-{task_id}")
    assert not any(task_id in item for item in module_redis.lrange("flows", 0, -1))
    assert unique not in webhook.logs()  # the (forged) token is never logged


def test_webhook_refuses_bad_requests_with_4xx(
    webhook: WebhookServer, b24_sim: Bitrix24Simulator, module_redis: redis.Redis
) -> None:
    url = f"{webhook.url}/bitrix24/events"
    token = b24_sim.oauth.application_token
    health = requests.get(f"{webhook.url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["redis"] == "ok", health
    too_big = requests.post(url, data={"auth[application_token]": token, "x": "y" * 300_000}, timeout=10)
    assert too_big.status_code == 413
    unreadable = requests.post(
        url, data=b"a]b=1", headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10
    )
    assert unreadable.status_code == 400
    malformed = requests.post(
        url, data={"event": "ONIMCONNECTORMESSAGEADD", "auth[application_token]": token}, timeout=10
    )
    assert malformed.status_code == 422 and "data" in malformed.json()["error"]
    other = requests.post(
        url,
        data={"event": "ONIMCONNECTORDIALOGFINISH", "data[CONNECTOR]": "rosdomofon", "data[LINE]": "1",
              "auth[application_token]": token},
        timeout=10,
    )  # fmt: skip
    assert other.status_code == 200 and other.json()["status"] == "ignored"
    assert token not in webhook.logs()


def test_handle_incoming_message_task_starts_the_chain(
    worker: CeleryWorker,
    celery_app: Any,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """Other services enqueue the flow by name, without importing our code."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 9)
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    started = celery_app.send_task(
        "flows.handle_incoming_message",
        kwargs={
            "message_id": message_id,
            "abonent_id": abonent_id,
            "phone": str(phone),
            "text": f"API {unique}",
        },
    ).get(timeout=60)
    assert started["task_ids"][-1] == f"msg:{message_id}:post"
    wait_result(started["task_ids"][-1])
    assert len(posts_of(b24_sim, unique)) == 1
    bad = celery_app.send_task(
        "flows.handle_incoming_message", kwargs={"message_id": message_id, "phone": "12"}
    )
    with pytest.raises(Exception, match="phone"):
        bad.get(timeout=60)


def test_connector_is_set_up_again_when_the_portal_lost_it(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    """After an app reinstall the portal no longer knows our connector: the post re-registers it."""
    with b24_sim.portal.lock:
        b24_sim.portal.connectors.clear()
        b24_sim.portal.active.clear()
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 10)
    wait_result(
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"снова {unique}"), f"MESSAGES_IN_SK_SB:0:{unique}"
        )
    )
    assert len(posts_of(b24_sim, unique)) == 1
    assert [a["active"] for a in b24_sim.openlines()["active"]] == [True]


def _long_text(unique: str, words: int = 4000) -> tuple[str, list[str]]:
    """About 68,000 characters: more than three Bitrix24 messages (20,000 each)."""
    expected = [f"{unique}-{i:05d}" for i in range(words)]
    return " ".join(expected), expected


def test_a_text_longer_than_bitrix24_keeps_is_posted_in_ordered_parts_once(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 11)
    message_id = f"MESSAGES_IN_SK_SB:1700000000000:{unique}"
    text, words = _long_text(unique)
    message = incoming(abonent_id, phone, text)
    result = wait_result(enqueue_incoming_message(message, message_id))
    parts = [f"{message_id}#{i}" for i in range(1, len(result["parts"]) + 1)]
    assert len(parts) == 4 and result["parts"] == parts

    posted = [m for m in _openline_chat(b24_sim, abonent_id)["messages"] if unique in m["text"]]
    assert [m["external_id"] for m in posted] == parts  # each part its own id, in order
    assert all(len(m["text"]) <= 20_000 for m in posted)
    assert [f"({i}/4)" in m["text"] for i, m in enumerate(posted, 1)] == [True] * 4
    assert re.findall(rf"{unique}-\d{{5}}", "".join(m["text"] for m in posted)) == words  # nothing cut
    # Markers keep ids and hashes, never the text (Redis runs noeviction).
    markers = list(module_redis.scan_iter(f"rdb24:done:{message_id}:*"))
    assert len(markers) == 3 + 4  # lookup, contact, post + one per part
    assert all(len(module_redis.get(key) or b"") < 2_000 for key in markers)

    # A redelivery after the task results expired posts no part again.
    for key in module_redis.keys(f"celery-task-meta-msg:{message_id}:*"):
        module_redis.delete(key)
    wait_result(enqueue_incoming_message(message, message_id))
    assert len(posts_of(b24_sim, unique)) == 4


def test_an_operator_reply_under_reused_portal_ids_is_another_reply(
    worker: CeleryWorker,
    webhook: WebhookServer,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """A portal that starts again empty (the sandbox's, on every ``make run``) reuses chat and message
    ids: the same ids with another text are delivered; the very same event again is not."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 7)
    wait_result(enqueue_incoming_message(incoming(abonent_id, phone, f"Ау {unique}"), f"T:1:{unique}"))
    outcome = b24_sim.operator_reply(f"первый {unique}", external_chat_id=f"abonent-{abonent_id}")

    def replies() -> list[str]:
        return [m.text for m in rd_sim.history(abonent_id, "support") if not m.incoming and unique in m.text]

    wait_until(lambda: len(replies()) == 1, message="the first reply delivered")
    with b24_sim.portal.lock:
        chat = b24_sim.portal.chats[outcome["chat_id"]]
        stored = next(m for m in chat["messages"] if m["id"] == outcome["message_id"])
        reused = {**stored, "text": f"второй {unique}"}  # same ids, another operator message
        body = encode(build_payload(b24_sim.portal, b24_sim.url, chat, reused, 1))
    for _ in range(2):  # the second POST is a repeat of the reused-id event: dropped
        posted = requests.post(
            f"{webhook.url}/bitrix24/events",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=10,
        )
        assert posted.status_code == 200
    wait_until(lambda: len(replies()) == 2, message="the reply under reused ids delivered")
    wait_until(lambda: queues_drained(module_redis), message="queues drained")
    delivered = replies()
    assert len(delivered) == 2 and any(f"второй {unique}" in t for t in delivered), delivered  # no third


def _replies_with(rd_sim: RosDomofonSimulator, abonent_id: int, unique: str) -> list[Any]:
    return [m for m in rd_sim.history(abonent_id, "support") if not m.incoming and unique in m.text]


def _start_dialog(rd_sim: RosDomofonSimulator, index: int, unique: str) -> int:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, index)
    wait_result(
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"Здравствуйте {unique}"), f"MESSAGES_IN_SK_SB:7:{unique}"
        )
    )
    return abonent_id


def test_a_picture_from_a_subscriber_reaches_the_open_line_as_a_file(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 11)
    url = f"https://cdn.rosdomofon.example/photo/{unique}.jpg"
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    wait_result(enqueue_incoming_message(incoming(abonent_id, phone, "", image_url=url), message_id))
    posted = [m for m in _openline_chat(b24_sim, abonent_id)["messages"] if m["external_id"] == message_id]
    assert len(posted) == 1
    assert posted[0]["files"] == [{"url": url, "name": f"{unique}.jpg"}]
    assert posted[0]["text"].endswith("(фото)")  # never "(пустое сообщение)" for a photo


HOSTILE = [
    "[URL=https://evil.example]оплатить[/URL] [SEND=/close]закрыть[/SEND]",
    "[B]+70000000000, л/с 1[/B][BR][CALL=+79990000000]позвонить[/CALL] [PUT=x]y[/PUT]",
]


@pytest.mark.parametrize("typed", HOSTILE)
def test_hostile_subscriber_text_reaches_the_open_line_inert(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str, typed: str
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 6)
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    wait_result(enqueue_incoming_message(incoming(abonent_id, phone, f"{typed} {unique}"), message_id))
    posted = next(
        m for m in _openline_chat(b24_sim, abonent_id)["messages"] if m["external_id"] == message_id
    )
    words = posted["text"].split("[br]", 1)[1]  # after our bold sender line
    assert words == inert(f"{typed} {unique}")
    assert words.replace(WORD_JOINER, "") == f"{typed} {unique}"


def test_a_files_only_operator_reply_reaches_the_subscriber_as_links(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    """A reply with files and no words was dead-lettered as "no text"; now the names and links go."""
    abonent_id = _start_dialog(rd_sim, 7, unique)
    outcome = b24_sim.operator_reply(
        "",
        external_chat_id=f"abonent-{abonent_id}",
        operator_name="Анна",
        files=[{"name": f"инструкция-{unique}.pdf", "size": 2048}, {"name": f"схема-{unique}.png"}],
    )
    assert outcome["deliveries"][0]["status"] == 200, outcome
    sent = wait_until(lambda: _replies_with(rd_sim, abonent_id, unique), message="files reply delivered")
    assert len(sent) == 1
    with b24_sim.portal.lock:
        stored = next(
            m
            for m in b24_sim.portal.chats[outcome["chat_id"]]["messages"]
            if m["id"] == outcome["message_id"]
        )
    first, second = stored["files"]
    assert sent[0].text.split("\n") == [
        f"📎 инструкция-{unique}.pdf (2.0 КБ): {first['link']}",
        f"📎 схема-{unique}.png (1.0 КБ): {second['link']}",
    ]

    def delivered() -> bool:
        chat = _openline_chat(b24_sim, abonent_id)
        return any(m["id"] == outcome["message_id"] and m.get("delivered") for m in chat["messages"])

    wait_until(delivered, message="files reply marked delivered")


def test_a_long_operator_reply_arrives_as_ordered_parts(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id = _start_dialog(rd_sim, 8, unique)
    words = " ".join(f"{unique}-{n}" for n in range(60))  # ~700 characters, three parts of 300
    outcome = b24_sim.operator_reply(words, external_chat_id=f"abonent-{abonent_id}", operator_name="Олег")
    assert outcome["deliveries"][0]["status"] == 200, outcome

    def all_parts() -> list[Any]:
        found = _replies_with(rd_sim, abonent_id, unique)
        return found if found and all(f"/{len(found)}) " in m.text for m in found) and len(found) > 2 else []

    parts = sorted(wait_until(all_parts, message="every part delivered"), key=lambda m: m.id)
    assert all(len(m.text) <= REPLY_MAX_LENGTH for m in parts)
    assert [m.text.split(" ", 1)[0] for m in parts] == [
        f"({n}/{len(parts)})" for n in range(1, len(parts) + 1)
    ]
    body = " ".join(m.text.split(" ", 1)[1] for m in parts)
    assert body.split() == f"Олег:\n{words}".split()


def test_a_long_reply_interrupted_after_its_first_part_sends_only_the_rest(
    worker: CeleryWorker,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """The worker died after part 1 went out (its marker is done): the redelivered task sends parts
    2..n only, so the subscriber never reads the reply's beginning twice."""
    abonent_id = _start_dialog(rd_sim, 2, unique)
    chat = _openline_chat(b24_sim, abonent_id)
    words = " ".join(f"{unique}-{n}" for n in range(60))
    stored = operator_message(b24_sim.portal, chat["chat_id"], words, 1, "Олег")["message"]
    reply = OperatorReplyPayload(
        connector=chat["connector"],
        line=chat["line"],
        chat_id=chat["external_chat_id"],
        im_chat_id=chat["chat_id"],
        im_message_id=stored["id"],
        text=stored["text"],
    )
    key = reply_key(reply)
    parts = split_reply(reply_text(reply), REPLY_MAX_LENGTH)
    assert len(parts) > 2
    first = {"abonent_id": abonent_id, "transport": "rest", "text": parts[0], "rosdomofon_message_id": 1}
    effects.mark_done(module_redis, key, f"{PART_STEP}:1", first, ttl=600)

    enqueue_operator_reply(reply, key)
    result = wait_result(key)
    assert len(result["parts"]) == len(parts) and result["parts"][0] == 1  # part 1 as recorded
    assert result["text"] == "\n".join(parts)
    sent = sorted(_replies_with(rd_sim, abonent_id, unique), key=lambda m: m.id)
    assert [m.text for m in sent] == parts[1:]


SEND_PATH = "/abonents-service/api/v1/messages"  # POST /messages only, not the history GET


def _open_dialog(rd_sim: RosDomofonSimulator, index: int, unique: str) -> int:
    """A subscriber who wrote once, so their Open Lines dialog exists; returns the abonent id."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, index)
    wait_result(
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"Вопрос {unique}"), f"MESSAGES_IN_SK_SB:0:{unique}"
        )
    )
    return abonent_id


def _replies(rd_sim: RosDomofonSimulator, abonent_id: int, unique: str) -> list[Any]:
    """Our replies in the subscriber's history containing ``unique``, oldest first."""
    found = [m for m in rd_sim.history(abonent_id, "support") if not m.incoming and unique in m.text]
    return list(reversed(found))


def _reply_and_wait_settled(
    b24_sim: Bitrix24Simulator, abonent_id: int, text: str, cache: redis.Redis
) -> None:
    outcome = b24_sim.operator_reply(text, external_chat_id=f"abonent-{abonent_id}", operator_name="Анна")
    assert outcome["deliveries"] and outcome["deliveries"][0]["status"] == 200, outcome
    key = f"reply:{outcome['chat_id']}:{outcome['message_id']}"
    wait_until(
        lambda: (
            cache.zscore(inflight.LEDGER_KEY, key) is None
            and cache.exists(f"rdb24:done:{key}:delivery-status")
        ),
        message=f"reply {key} settled",
    )


def test_same_reply_text_twice_with_a_503_on_the_second_send_delivers_both(
    worker: CeleryWorker,
    webhook: WebhookServer,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """Issue 14.2: the retry of the second "Спасибо" must not take the first one for its own send."""
    abonent_id = _open_dialog(rd_sim, 6, unique)
    _reply_and_wait_settled(b24_sim, abonent_id, f"Спасибо {unique}", module_redis)
    rd_sim.faults.update(path_prefix=SEND_PATH, fail_next=1, fail_status=503)
    try:
        _reply_and_wait_settled(b24_sim, abonent_id, f"Спасибо {unique}", module_redis)
        assert rd_sim.faults.settings.fail_next == 0  # the 503 was served to the second send
    finally:
        rd_sim.faults.clear()
    sent = _replies(rd_sim, abonent_id, unique)
    assert [m.text for m in sent] == [f"Анна:\nСпасибо {unique}"] * 2


def test_reply_committed_but_answered_503_is_recognised_by_its_new_id_and_not_sent_again(
    worker: CeleryWorker,
    webhook: WebhookServer,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """The send went out but its answer was lost: the retry finds the message that was not in the
    history before the first attempt, and sends nothing, even though an older identical reply exists."""
    abonent_id = _open_dialog(rd_sim, 7, unique)
    _reply_and_wait_settled(b24_sim, abonent_id, f"Здравствуйте {unique}", module_redis)
    rd_sim.faults.update(path_prefix=SEND_PATH, commit_then_fail_next=1, fail_status=503)
    try:
        _reply_and_wait_settled(b24_sim, abonent_id, f"Здравствуйте {unique}", module_redis)
        assert rd_sim.faults.settings.commit_then_fail_next == 0
    finally:
        rd_sim.faults.clear()
    assert len(_replies(rd_sim, abonent_id, unique)) == 2  # the first reply and the committed second


def test_replies_of_one_dialog_arrive_in_order_when_the_first_is_retried(
    worker: CeleryWorker,
    webhook: WebhookServer,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """Issue 14.3: the first reply's send gets 503s and is retried; the second waits for it."""
    abonent_id = _open_dialog(rd_sim, 11, unique)
    rd_sim.faults.update(path_prefix=SEND_PATH, fail_next=2, fail_status=503)
    try:
        for text in (f"первый {unique}", f"второй {unique}", f"третий {unique}"):
            outcome = b24_sim.operator_reply(text, external_chat_id=f"abonent-{abonent_id}")
            assert outcome["deliveries"][0]["status"] == 200, outcome
        wait_until(lambda: len(_replies(rd_sim, abonent_id, unique)) == 3, message="three replies sent")
    finally:
        rd_sim.faults.clear()
    order = [m.text.split()[-2] for m in _replies(rd_sim, abonent_id, unique)]
    assert order == ["первый", "второй", "третий"]


def _poll_offline() -> dict[str, Any]:
    from tasks.runtime.app import app

    return wait_result(app.send_task("flows.poll_offline_events", kwargs={}).id)


def test_reply_the_receiver_never_got_is_caught_up_from_the_offline_queue_once(
    worker: CeleryWorker,
    webhook: WebhookServer,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """Issue 14.1, second source: the event could not reach the receiver (Bitrix24 gives up on it),
    the portal's offline queue still has it; a reply that reached both is sent once."""
    abonent_id = _open_dialog(rd_sim, 9, unique)
    assert _poll_offline()["enabled"]  # the first poll binds the event offline
    portal = b24_sim.portal
    with portal.lock:
        handlers = [dict(h) for h in portal.handlers]
        for handler in portal.handlers:
            handler["handler"] = f"http://127.0.0.1:{free_port()}/bitrix24/events"  # receiver unreachable
    try:
        missed = b24_sim.operator_reply(f"мимо {unique}", external_chat_id=f"abonent-{abonent_id}")
    finally:
        with portal.lock:
            portal.handlers[:] = handlers
    assert missed["deliveries"] and "error" in missed["deliveries"][0], missed
    _reply_and_wait_settled(b24_sim, abonent_id, f"дошло {unique}", module_redis)  # both sources have it

    polled = _poll_offline()
    assert polled["enqueued"] == [f"reply:{missed['chat_id']}:{missed['message_id']}"], polled
    assert len(polled["duplicates"]) == 1
    wait_until(lambda: len(_replies(rd_sim, abonent_id, unique)) == 2, message="the missed reply sent")
    assert _poll_offline()["records"] == 0  # cleared
    wait_until(lambda: queues_drained(module_redis), message="queues drained")
    assert sorted(m.text.split()[-2] for m in _replies(rd_sim, abonent_id, unique)) == ["дошло", "мимо"]


def test_reply_whose_first_attempt_left_no_record_is_sent_again_and_counted(
    worker: CeleryWorker,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """A "started" marker with no record of the history before it (an older version's attempt, or an
    expired record): whether it went out cannot be known, so it is sent, never skipped, and counted."""
    abonent_id = _open_dialog(rd_sim, 10, unique)
    chats = b24_sim.openlines()["chats"]
    (chat,) = [c for name, c in chats.items() if name.endswith(f"|abonent-{abonent_id}")]
    stored = operator_message(b24_sim.portal, chat["chat_id"], f"Неизвестно {unique}", 1, "Анна")["message"]
    reply = OperatorReplyPayload(
        connector=chat["connector"],
        line=chat["line"],
        chat_id=chat["external_chat_id"],
        im_chat_id=chat["chat_id"],
        im_message_id=stored["id"],
        text=stored["text"],
    )
    key = reply_key(reply)
    effects.mark_started(module_redis, key, SEND_STEP)  # the attempt that died left only this
    counter = "rdb24:metrics:rdb24_replies_resent_unknown_total"
    before = float(module_redis.hget(counter, '["rest"]') or 0)
    inflight.track(module_redis, key, inflight.REPLY, reply)
    assert key in resend_stalled()["resent"]
    wait_result(key)
    assert len(_replies(rd_sim, abonent_id, unique)) == 1
    assert float(module_redis.hget(counter, '["rest"]') or 0) == before + 1


def test_reply_behind_a_stuck_earlier_one_goes_ahead_after_the_order_wait(
    worker: CeleryWorker,
    webhook: WebhookServer,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    """Issue 14.3's bound: an earlier reply that never gets sent holds a later one back for
    REPLY_ORDER_WAIT at most; then the later one is sent, counted, and the stuck one stops blocking."""
    abonent_id = _open_dialog(rd_sim, 2, unique)
    dialog = f"abonent-{abonent_id}"
    stuck = OperatorReplyPayload(
        connector="rosdomofon", line="1", chat_id=dialog, im_chat_id=1, im_message_id=1, text="застрял"
    )
    stuck_key = reply_key(stuck)
    inflight.track(module_redis, stuck_key, inflight.REPLY, stuck)  # in flight, never settled
    reply_order.join(module_redis, dialog, stuck_key, 1, ttl=600)
    counter = "rdb24:metrics:rdb24_reply_order_given_up_total"
    before = float(module_redis.hget(counter, "[]") or 0)
    try:
        started = time.monotonic()
        outcome = b24_sim.operator_reply(f"после {unique}", external_chat_id=dialog)
        assert outcome["deliveries"][0]["status"] == 200, outcome
        wait_until(lambda: _replies(rd_sim, abonent_id, unique), message="the later reply sent")
        assert time.monotonic() - started >= ORDER_WAIT - 1  # it did wait
        assert float(module_redis.hget(counter, "[]") or 0) == before + 1
        assert stuck_key not in reply_order.pending(module_redis, dialog)
    finally:
        inflight.settle(module_redis, stuck_key)
