"""Subscriber messages on a webhook-only portal: one CRM-linked chat per contact (real worker, Redis,
simulators over HTTP)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from threading import Thread
from typing import Any

import pytest
import redis
import requests

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon.server import RosDomofonSimulator
from schemas.flows import OperatorReplyPayload
from tasks.flows.incoming_message import enqueue_incoming_message, step_task_id, subscriber_message
from tasks.flows.texts import NO_ACCOUNT, WORD_JOINER, inert
from tasks.state import inflight
from tests.support.celery_worker import CeleryWorker
from tests.support.flow_tasks import queues_drained, resend_stalled
from tests.support.kafka_records import incoming
from tests.support.simulators import (
    contacts_with_phone,
    crm_chat_env,
    posts_of,
    rosdomofon_env,
    subscriber_with_account,
    subscriber_without_account,
)
from tests.support.waiting import wait_result, wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def worker(
    module_redis_url: str,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    celery_worker_factory: Callable[..., CeleryWorker],
) -> Iterator[CeleryWorker]:
    # A short Bitrix24 timeout so a held write turns into an ambiguous failure quickly.
    env = {
        **rosdomofon_env(rd_sim),
        **crm_chat_env(b24_sim),
        "REDIS_URL": module_redis_url,
        "BITRIX24_TIMEOUT": "2",
    }
    started = celery_worker_factory(env)
    yield started
    started.stop()


def contact_chats(sim: Bitrix24Simulator, contact_id: int) -> list[dict[str, Any]]:
    return [
        c
        for c in sim.chats()
        if c.get("ENTITY_TYPE") == "CRM" and c.get("ENTITY_ID") == f"CONTACT|{contact_id}"
    ]


def test_messages_of_one_subscriber_share_one_crm_chat(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone, account_id = subscriber_with_account(rd_sim, 4)
    first = wait_result(
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"первое {unique}"), f"MESSAGES_IN_SK_SB:0:{unique}"
        )
    )
    second = wait_result(
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"второе {unique}"), f"MESSAGES_IN_SK_SB:1:{unique}"
        )
    )
    assert first["mode"] == second["mode"] == "crm_chat"
    assert first["chat_id"] == second["chat_id"]
    contacts = contacts_with_phone(b24_sim, str(phone))
    assert len(contacts) == 1 and contacts[0]["ORIGIN_ID"] == str(account_id)
    chats = contact_chats(b24_sim, contacts[0]["ID"])
    assert len(chats) == 1
    texts = [m["text"] for m in chats[0]["messages"]]
    assert len(texts) == 2 and f"первое {unique}" in texts[0] and f"второе {unique}" in texts[1]
    assert f"+{phone}" in chats[0]["messages"][0]["text"]


def test_redelivery_and_concurrency_do_not_duplicate(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 5)
    messages = [
        (incoming(abonent_id, phone, f"m{n} {unique}"), f"MESSAGES_IN_SK_SB:{n}:{unique}") for n in range(3)
    ]
    ids: list[str] = []
    threads = [Thread(target=lambda m=m: ids.append(enqueue_incoming_message(*m))) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    results = [wait_result(task_id) for task_id in ids]
    # Redelivery of all three after their results expired: markers keep them single.
    for key in module_redis.keys(f"celery-task-meta-msg:MESSAGES_IN_SK_SB:*:{unique}:*"):
        module_redis.delete(key)
    for message in messages:
        wait_result(enqueue_incoming_message(*message))
    wait_until(lambda: queues_drained(module_redis), message="queues drained")

    assert len({r["contact_id"] for r in results}) == 1
    assert len(contacts_with_phone(b24_sim, str(phone))) == 1
    assert len(contact_chats(b24_sim, results[0]["contact_id"])) == 1
    assert len(posts_of(b24_sim, unique)) == 3


def test_subscriber_without_account_is_marked(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone = subscriber_without_account(rd_sim, 79980000000 + int(unique[:6], 16) % 1_000_000)
    wait_result(
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"без счёта {unique}"), f"MESSAGES_IN_SK_SB:0:{unique}"
        )
    )
    contacts = contacts_with_phone(b24_sim, str(phone))
    assert len(contacts) == 1 and NO_ACCOUNT in contacts[0]["COMMENTS"]
    posted = posts_of(b24_sim, unique)
    assert len(posted) == 1 and NO_ACCOUNT in posted[0]["text"]


@pytest.mark.parametrize("style", ["8 ({}) {}-{}-{}", "+7 {} {} {}{}"])
def test_contact_an_operator_typed_in_another_spelling_is_found_not_doubled(
    style: str, worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone = subscriber_without_account(rd_sim, 79130000000 + int(unique[:6], 16) % 1_000_000)
    digits = str(phone)[1:]
    typed = style.format(digits[:3], digits[3:6], digits[6:8], digits[8:])
    answer = requests.post(
        f"{b24_sim.webhook_url}crm.contact.add",
        json={"fields": {"NAME": "Введён оператором", "PHONE": [{"VALUE": typed}]}},
        timeout=10,
    )
    existing = int(answer.json()["result"])
    result = wait_result(
        enqueue_incoming_message(incoming(abonent_id, phone, f"написание {unique}"), f"SPELLING:0:{unique}")
    )
    assert result["contact_id"] == existing
    assert contacts_with_phone(b24_sim, str(phone)) == []  # no contact added with the canonical spelling
    assert len(posts_of(b24_sim, unique)) == 1


def test_ambiguous_contact_create_is_looked_up_not_repeated(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    """crm.contact.add commits but answers after our timeout: the step finds the contact, adds none."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 8)
    b24_sim.inject("commit_then_timeout", method="crm.contact.add", seconds=4, count=1)
    result = wait_result(
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"таймаут {unique}"), f"MESSAGES_IN_SK_SB:0:{unique}"
        )
    )
    assert not b24_sim.faults.listing()  # the fault did fire
    contacts = contacts_with_phone(b24_sim, str(phone))
    assert len(contacts) == 1 and int(contacts[0]["ID"]) == result["contact_id"]
    assert len(posts_of(b24_sim, unique)) == 1


def test_same_message_enqueued_twice_at_once_is_posted_once(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    """A Kafka record read again while its first chain still runs: both chains race, one post lands."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 9)
    wait_result(  # the contact and its chat exist, so both copies reach the post at the same time
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"warm {unique}"), f"MESSAGES_IN_SK_SB:9:{unique}"
        )
    )
    b24_sim.inject("latency", method="im.message.add", seconds=1.5, count=2)
    message = incoming(abonent_id, phone, f"twice {unique}")
    threads = [
        Thread(target=enqueue_incoming_message, args=(message, f"MESSAGES_IN_SK_SB:0:{unique}"))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    wait_until(lambda: posts_of(b24_sim, f"twice {unique}"), message="first post")
    wait_until(lambda: queues_drained(module_redis), message="queues drained")
    b24_sim.faults.clear()
    assert len(posts_of(b24_sim, f"twice {unique}")) == 1


def test_interrupted_post_is_not_mistaken_for_a_post_whose_id_it_prefixes(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    """Message ``...:1`` fails ambiguously after ``...:10`` was posted: its retry must still post it
    (the hidden tag ``rdb24:...:1`` is a prefix of ``rdb24:...:10``)."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 10)
    wait_result(enqueue_incoming_message(incoming(abonent_id, phone, f"ten {unique}"), f"T{unique}:0:10"))
    b24_sim.inject("error", method="im.message.add", count=1, status=503, code="")
    wait_result(enqueue_incoming_message(incoming(abonent_id, phone, f"one {unique}"), f"T{unique}:0:1"))
    assert not b24_sim.faults.listing()  # the 503 was served
    assert len(posts_of(b24_sim, f"one {unique}")) == 1
    assert len(posts_of(b24_sim, f"ten {unique}")) == 1


def test_message_whose_task_message_was_lost_is_resent_and_posted_once(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    """The ledger entry is written, then the chain's task message vanishes (as in kombu's fetch window
    under kill -9: no queue, no unacked record, no dead letter). The sweep enqueues it again."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 6)
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    lost = subscriber_message(incoming(abonent_id, phone, f"потеря {unique}"), message_id)
    inflight.track(module_redis, message_id, inflight.MESSAGE, lost)

    swept = resend_stalled()
    assert message_id in swept["resent"]
    wait_result(step_task_id(message_id, "post"))
    assert len(posts_of(b24_sim, unique)) == 1
    assert module_redis.zscore(inflight.LEDGER_KEY, message_id) is None  # settled by the post

    again = resend_stalled()
    assert message_id not in again["resent"] + again["settled"]
    assert len(posts_of(b24_sim, unique)) == 1


def test_posted_message_still_in_the_ledger_is_struck_out_not_resent(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    """A worker died between writing the post's marker and settling the ledger: only strike it out."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 7)
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    message = incoming(abonent_id, phone, f"готово {unique}")
    wait_result(enqueue_incoming_message(message, message_id))
    assert module_redis.zscore(inflight.LEDGER_KEY, message_id) is None
    assert not resend_stalled(older_than=3600)["resent"]  # nothing is that old

    inflight.track(module_redis, message_id, inflight.MESSAGE, subscriber_message(message, message_id))
    swept = resend_stalled()
    assert message_id in swept["settled"] and message_id not in swept["resent"]
    assert module_redis.zscore(inflight.LEDGER_KEY, message_id) is None
    assert len(posts_of(b24_sim, unique)) == 1


def test_unreadable_ledger_entries_do_not_block_the_sweep(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    """Entries the sweep cannot read (an unknown kind; a payload from an incompatible version) are
    older than a lost message, so they come first: they are moved aside and dead-lettered, the message
    is resent."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 11)
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    lost = subscriber_message(incoming(abonent_id, phone, f"после мусора {unique}"), message_id)
    strange, old = f"strange-{unique}", f"old-{unique}"
    inflight.track(module_redis, strange, "fax", lost)
    inflight.track(module_redis, old, inflight.MESSAGE, OperatorReplyPayload(
        connector="c", line="1", chat_id="abonent-1", im_chat_id=1, im_message_id=1, text="x"
    ))  # fmt: skip
    module_redis.zadd(inflight.LEDGER_KEY, {strange: 1.0, old: 2.0})
    inflight.track(module_redis, message_id, inflight.MESSAGE, lost)
    try:
        swept = resend_stalled()
        assert {strange, old} <= set(swept["unreadable"]) and message_id in swept["resent"]
        wait_result(step_task_id(message_id, "post"))
        assert len(posts_of(b24_sim, unique)) == 1
        for key in (strange, old):  # out of the sweep's window, kept for a human
            assert module_redis.zscore(inflight.LEDGER_KEY, key) is None
            assert module_redis.hexists(inflight.UNREADABLE_KEY, key)
    finally:
        inflight.settle(module_redis, strange)
        inflight.settle(module_redis, old)
        module_redis.hdel(inflight.UNREADABLE_KEY, strange, old)
        _delete_letters_of(module_redis, {strange, old})


def _delete_letters_of(client: redis.Redis, ledger_keys: set[str]) -> None:
    from tasks.state.dead_letters import DeadLetterStore

    store = DeadLetterStore(client)
    for letter in store.list(limit=max(store.count(), 1)):
        if letter.source.get("ledger_key") in ledger_keys:
            store.delete(letter.id)


def test_a_text_longer_than_bitrix24_keeps_is_posted_in_ordered_tagged_parts(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 0)
    message_id = f"MESSAGES_IN_SK_SB:1700000000000:{unique}"
    words = [f"{unique}-{i:05d}" for i in range(2500)]  # ~42,500 characters: three parts
    message = incoming(abonent_id, phone, "\n".join(words))
    result = wait_result(enqueue_incoming_message(message, message_id))
    assert len(result["parts"]) == 3 and result["posted_message_id"] == result["parts"][-1]

    posted = posts_of(b24_sim, unique)
    assert [int(m["id"]) for m in posted] == result["parts"]
    for i, post in enumerate(posted, 1):
        assert len(post["text"]) <= 20_000 and f"({i}/3)" in post["text"]
        assert f"rdb24:{message_id}#{i}[" in post["text"]  # each part recognisable on its own
    assert re.findall(rf"{unique}-\d{{5}}", "".join(m["text"] for m in posted)) == words
    assert all(
        len(module_redis.get(k) or b"") < 2_000 for k in module_redis.scan_iter(f"rdb24:done:{message_id}:*")
    )

    # A crash right after part 3 went in: its marker still says "started", the message's is gone.
    part3 = f"rdb24:done:{message_id}:post#3"
    interrupted = {**json.loads(module_redis.get(part3) or "{}"), "state": "started", "result": None}
    module_redis.set(part3, json.dumps(interrupted))
    module_redis.delete(f"rdb24:done:{message_id}:post")
    for key in module_redis.keys(f"celery-task-meta-msg:{message_id}:*"):
        module_redis.delete(key)
    wait_result(enqueue_incoming_message(message, message_id))
    assert len(posts_of(b24_sim, unique)) == 3  # part 3's tag was found in the chat: not posted again


def test_a_late_redelivery_whose_markers_expired_checks_the_chat_first(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    """Older than EFFECT_MARKER_TTL: no marker no longer proves "never posted"."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 1)
    message_id = f"MESSAGES_IN_SK_SB:1700000000000:{unique}"
    message = incoming(abonent_id, phone, f"давно {unique}")
    fifteen_days_ago = int(time.time()) - 15 * 86400
    wait_result(enqueue_incoming_message(message, message_id, fifteen_days_ago))
    assert len(posts_of(b24_sim, unique)) == 1
    # The markers expired (14 days) and so did the task results; the message comes back.
    for key in [
        *module_redis.keys(f"rdb24:done:{message_id}:*"),
        *module_redis.keys(f"celery-task-meta-msg:{message_id}:*"),
    ]:
        module_redis.delete(key)
    wait_result(enqueue_incoming_message(message, message_id, fifteen_days_ago))
    assert len(posts_of(b24_sim, unique)) == 1  # found by its tag, not posted again

    # A young message without markers is simply posted (no lookup needed).
    fresh_id = f"MESSAGES_IN_SK_SB:1700000000001:{unique}"
    wait_result(
        enqueue_incoming_message(incoming(abonent_id, phone, f"сейчас {unique}"), fresh_id, int(time.time()))
    )
    assert len(posts_of(b24_sim, f"сейчас {unique}")) == 1


def test_unreadable_ledger_entries_cannot_blind_the_resend_sweep(
    worker: CeleryWorker,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    module_redis: redis.Redis,
    unique: str,
) -> None:
    """600 entries it cannot read, older than a good stalled one: the good one is still resent."""
    from schemas.dead_letters import DeadLetterKind
    from tasks.state.dead_letters import DeadLetterStore

    abonent_id, phone, _ = subscriber_with_account(rd_sim, 2)
    bad = {f"bad-{unique}-{n}": "{not json" if n % 2 else '{"kind": "message"}' for n in range(600)}
    with module_redis.pipeline() as pipe:
        pipe.hset(inflight.MESSAGES_KEY, mapping=bad)
        pipe.zadd(inflight.LEDGER_KEY, {key: 1.0 + n for n, key in enumerate(bad)})
        pipe.execute()
    message_id = f"MESSAGES_IN_SK_SB:1700000000000:{unique}"
    lost = subscriber_message(incoming(abonent_id, phone, f"за стеной {unique}"), message_id)
    inflight.track(module_redis, message_id, inflight.MESSAGE, lost)

    swept = resend_stalled()
    assert message_id in swept["resent"] and len(swept["unreadable"]) == 600
    wait_result(step_task_id(message_id, "post"))
    assert len(posts_of(b24_sim, unique)) == 1
    assert not any(module_redis.zscore(inflight.LEDGER_KEY, key) for key in bad)  # out of the window
    assert all(module_redis.hexists(inflight.UNREADABLE_KEY, key) for key in bad)
    store = DeadLetterStore(module_redis)
    letters = [d for d in store.list(limit=store.count()) if d.kind == DeadLetterKind.INFLIGHT_ENTRY]
    assert {d.source["ledger_key"] for d in letters} >= set(bad)
    _delete_letters_of(module_redis, set(bad))
    module_redis.hdel(inflight.UNREADABLE_KEY, *bad)


def test_a_picture_from_a_subscriber_is_attached_as_a_link(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 11)
    url = f"https://cdn.rosdomofon.example/photo/{unique}.jpg"
    wait_result(
        enqueue_incoming_message(
            incoming(abonent_id, phone, f"вот фото {unique}", image_url=url), f"MESSAGES_IN_SK_SB:0:{unique}"
        )
    )
    (posted,) = posts_of(b24_sim, f"вот фото {unique}")
    assert posted["attach"] == [{"LINK": {"NAME": f"{unique}.jpg", "LINK": url}}]
    assert f"Фото: {url}" in posted["text"]


def test_subscriber_text_cannot_forge_the_tag_of_an_interrupted_post(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    """Message 2's words carry message 1's hidden tag (bare and in its BB wrapper); message 1's post
    then fails ambiguously (503). Its retry must not take message 2's post for its own: it posts."""
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 1)
    victim, forger = f"T{unique}:0:1", f"T{unique}:0:2"
    forged = f"rdb24:{victim} [i][size=8]rdb24:{victim}[/size][/i] [B]жирный[/B] {unique}"
    wait_result(enqueue_incoming_message(incoming(abonent_id, phone, forged), forger))
    (forger_post,) = posts_of(b24_sim, unique)
    assert "[B]" not in forger_post["text"] and "rdb24:" + victim not in forger_post["text"]
    b24_sim.inject("error", method="im.message.add", count=1, status=503, code="")
    wait_result(enqueue_incoming_message(incoming(abonent_id, phone, f"жертва {unique}"), victim))
    assert not b24_sim.faults.listing()  # the 503 was served to the victim's first post
    assert len(posts_of(b24_sim, f"жертва {unique}")) == 1


HOSTILE = [
    "[URL=https://evil.example]оплатить[/URL] [SEND=/close]закрыть[/SEND]",
    "[B]+70000000000, л/с 1[/B][BR][CALL=+79990000000]позвонить[/CALL] [PUT=x]y[/PUT]",
]


@pytest.mark.parametrize("typed", HOSTILE)
def test_hostile_subscriber_text_reaches_the_crm_chat_inert(
    worker: CeleryWorker, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, unique: str, typed: str
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 2)
    message_id = f"MESSAGES_IN_SK_SB:0:{unique}"
    wait_result(enqueue_incoming_message(incoming(abonent_id, phone, f"{typed} {unique}"), message_id))
    (posted,) = posts_of(b24_sim, unique)
    words = posted["text"].split("[br]", 1)[1].rsplit("[br]", 1)[0]  # between our sender line and tag
    assert words == inert(f"{typed} {unique}")
    assert words.replace(WORD_JOINER, "") == f"{typed} {unique}"
