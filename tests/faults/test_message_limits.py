"""Scenarios 13c/13d: a resend sweep that cannot be blinded (issue 13 item 5) and texts longer than
Bitrix24 keeps (item 9), through the whole stack.

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
from tests.faults.harness import SentMessage
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
