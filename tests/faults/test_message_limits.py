"""Scenarios 13c-13f through the whole stack: a resend sweep that cannot be blinded (issue 13 item 5),
texts longer than Bitrix24 keeps (item 9), a dead-letter store over its bound (item 4) and a
redelivery after the effect markers expired (item 7).

13c: the ledger holds 600 entries the sweep cannot read, all older than one message whose task message
was lost (it exists only as its ledger entry). One sweep moves the 600 aside as dead letters and
resends the message, which is posted once. 13d: messages of 45,000 characters (Bitrix24 cuts at 20,000)
arrive through Kafka among short ones; each is posted in three ordered parts, nothing cut.
"""

from __future__ import annotations

import json
import re
import time

from schemas.flows import SubscriberMessage
from tasks.state import inflight
from tests.faults import tally
from tests.faults.conftest import StackFactory
from tests.faults.harness import SentMessage, StackOptions
from tests.faults.scenario import finish, now

UNREADABLE = 600


def test_unreadable_ledger_entries_do_not_blind_the_resend_sweep(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    stack.worker("worker1")
    client = stack.redis()
    with client.pipeline() as pipe:
        for n in range(UNREADABLE):
            key = f"garbage-{n}"
            pipe.hset(
                inflight.MESSAGES_KEY,
                key,
                "{not json" if n % 3 else json.dumps({"kind": "fax", "payload": {}}),
            )
            pipe.zadd(inflight.LEDGER_KEY, {key: 1_000.0 + n})  # all older than the lost message
        pipe.execute()
    (abonent_id, phone) = stack.subscribers(1)[0]
    mark = tally.marker(stack.run, 0)
    lost = SubscriberMessage(
        message_id=f"{stack.topic_in}:{int(time.time() * 1000)}:{mark}",
        abonent_id=abonent_id,
        phone=phone,
        text=f"{mark} lost in the fetch window",
        sent_at=int(time.time()),
    )
    inflight.track(client, lost.message_id, inflight.MESSAGE, lost)  # tracked, its chain never published
    stack.sent.append(SentMessage(mark, abonent_id, phone, time.monotonic()))

    swept = stack.cli("enqueue", "flows.resend_stalled_messages", '{"older_than": 0}', "--wait", "120")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    result = json.loads(swept.stdout.splitlines()[-1])
    assert result["resent"] == [lost.message_id] and len(result["unreadable"]) == UNREADABLE, result
    assert inflight.unreadable_count(client) == UNREADABLE
    finish(stack, "13c 600 unreadable ledger entries + one lost message", fault_ended_at=now(),
           expected_dead_letters=UNREADABLE)  # fmt: skip


def test_texts_longer_than_bitrix24_keeps_are_posted_in_parts(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    stack.worker("worker1")
    stack.ingest()
    subscribers = stack.subscribers(5)
    long_text = " ".join(f"w{i:05d}" for i in range(7_500)) + " END-of-long"  # 45,011 characters
    stack.send(5, subscribers)
    long_ones = stack.send(5, subscribers, text=long_text)
    stack.send(5, subscribers)
    finish(stack, "13d 45,000-character texts (posted in parts)", fault_ended_at=now())
    assert stack.sims is not None
    texts = stack.sims.posted_texts()
    assert all(len(t) <= 20_000 for t in texts), max(len(t) for t in texts)
    assert sum("END-of-long" in t for t in texts) == len(long_ones)  # each message's last part, once
    assert sum("(3/3)" in t for t in texts) == len(long_ones)
    words = [w for t in texts for w in re.findall(r"\bw\d{5}\b", t)]
    assert len(words) == 7_500 * len(long_ones)  # nothing cut, nothing doubled


def test_a_full_dead_letter_store_drops_no_message(stack_factory: StackFactory) -> None:
    """13e (item 4): eight posts refused for good with ``DEAD_LETTER_MAX=3``: all eight letters are kept
    (each is the last copy of its message), status asks for attention, and replaying them posts all."""
    from tasks.runtime.metrics import DEAD_LETTERS_OVER_LIMIT, KEY_PREFIX

    stack = stack_factory(StackOptions(env={"DEAD_LETTER_MAX": "3"}))
    assert stack.sims is not None
    stack.sims.bitrix24.inject(
        "error", method="imconnector.send.messages", count=8, status=400, code="ERROR_ARGUMENT"
    )
    stack.worker("worker1", concurrency=1)
    stack.ingest()
    subscribers = stack.subscribers(6)
    stack.send(12, subscribers)
    stack.wait_until(lambda: len(stack.dead_letters()) >= 8, 90, "eight refused posts dead-lettered")
    stack.wait_until(lambda: len(stack.posts().lost) == 8, 60, "the other four posted")
    assert len(stack.dead_letters()) == 8  # above the bound of 3, none dropped
    full = stack.redis().hgetall(KEY_PREFIX + DEAD_LETTERS_OVER_LIMIT.name)
    assert float(next(iter(full.values()), 0)) >= 5, full  # letters 4..8 found nothing to trim
    status = stack.cli("status", "--timeout", "1")
    assert "store full" in status.stdout and "8/3" in status.stdout, status.stdout

    fault_end = now()
    replayed = stack.cli("dlq", "replay", "--all")
    assert replayed.returncode == 0 and replayed.stdout.count(" -> ") == 8, replayed.stdout + replayed.stderr
    finish(stack, "13e dead-letter store over DEAD_LETTER_MAX: kept, replayed", fault_ended_at=fault_end)


def test_a_redelivery_after_the_markers_expired_checks_the_chat(stack_factory: StackFactory) -> None:
    """13f (item 7): every record read again by a new consumer group after its effect markers expired
    (``EFFECT_MARKER_TTL=6`` here, 14 days in production): no marker, yet nothing is posted twice."""
    from tasks.runtime.metrics import KEY_PREFIX, MESSAGES_INGESTED

    stack = stack_factory(StackOptions(env={"EFFECT_MARKER_TTL": "6"}))
    stack.worker("worker1")
    first = stack.ingest()
    subscribers = stack.subscribers(5)
    stack.send(10, subscribers)
    stack.wait_delivered(60)
    stack.wait_settled()
    first.terminate()
    time.sleep(7)  # every marker of the first run has expired
    assert not stack.redis().keys("rdb24:done:*")

    def ingested() -> float:
        return sum(float(v) for v in stack.redis().hgetall(KEY_PREFIX + MESSAGES_INGESTED.name).values())

    fault_end = now()
    stack.ingest("ingest-new-group", KAFKA_GROUP_ID=f"rdb24-faults-{stack.run}-again")  # reads from 0
    stack.wait_until(lambda: ingested() >= 20, 60, "the ten records read again")
    finish(stack, "13f redelivery after the markers expired", fault_ended_at=fault_end)
