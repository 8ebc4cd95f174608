"""The in-flight ledger against a real Redis."""

from __future__ import annotations

import redis

from schemas.flows import SubscriberMessage
from tasks.state import inflight


def _message(message_id: str) -> SubscriberMessage:
    return SubscriberMessage(message_id=message_id, abonent_id=7, phone="79130000007", text="нет звука")


def test_tracked_work_is_stalled_until_settled(redis_client: redis.Redis, unique: str) -> None:
    redis_client.delete(inflight.LEDGER_KEY, inflight.MESSAGES_KEY)
    first, second = _message(f"T:0:{unique}"), _message(f"T:1:{unique}")
    inflight.track(redis_client, first.message_id, inflight.MESSAGE, first)
    inflight.track(redis_client, second.message_id, inflight.MESSAGE, second)
    assert inflight.count(redis_client) == 2
    assert inflight.stalled(redis_client, older_than=3600) == []  # not old enough
    stalled = inflight.stalled(redis_client, older_than=0)  # oldest first, with what to resend
    assert [(e.key, e.kind) for e in stalled] == [
        (first.message_id, "message"),
        (second.message_id, "message"),
    ]
    assert SubscriberMessage.model_validate(stalled[0].payload) == first
    assert [e.key for e in inflight.stalled(redis_client, older_than=0, limit=1)] == [first.message_id]
    age = inflight.oldest_age(redis_client)
    assert age is not None and 0 <= age < 60

    inflight.settle(redis_client, first.message_id)
    assert [e.key for e in inflight.stalled(redis_client, older_than=0)] == [second.message_id]
    assert redis_client.hget(inflight.MESSAGES_KEY, first.message_id) is None
    inflight.settle(redis_client, first.message_id)  # settling twice is harmless
    inflight.settle(redis_client, second.message_id)
    assert inflight.count(redis_client) == 0 and inflight.oldest_age(redis_client) is None


def test_tracking_again_restarts_the_clock(redis_client: redis.Redis, unique: str) -> None:
    message = _message(f"T:2:{unique}")
    inflight.track(redis_client, message.message_id, inflight.MESSAGE, message)
    redis_client.zadd(inflight.LEDGER_KEY, {message.message_id: 1.0})  # tracked long ago
    assert message.message_id in [e.key for e in inflight.stalled(redis_client, older_than=3600)]
    inflight.track(redis_client, message.message_id, inflight.MESSAGE, message)  # what a resend does
    assert message.message_id not in [e.key for e in inflight.stalled(redis_client, older_than=3600)]
    inflight.settle(redis_client, message.message_id)


def test_unreadable_entries_come_back_marked_and_can_be_moved_aside(
    redis_client: redis.Redis, unique: str
) -> None:
    """Reading never raises over an entry's content; a bad entry leaves the ledger into its own hash."""
    redis_client.delete(inflight.LEDGER_KEY, inflight.MESSAGES_KEY, inflight.UNREADABLE_KEY)
    good = _message(f"T:0:{unique}")
    inflight.track(redis_client, good.message_id, inflight.MESSAGE, good)
    bad = {
        "not-json": "{nope",
        "no-kind": '{"payload": {}}',
        "list": "[1, 2]",
        "payload-text": '{"kind": "message", "payload": "x"}',
    }
    for key, raw in bad.items():
        redis_client.hset(inflight.MESSAGES_KEY, key, raw)
        redis_client.zadd(inflight.LEDGER_KEY, {key: 1.0})  # older than the good one
    redis_client.zadd(inflight.LEDGER_KEY, {"orphan": 1.0})  # a member without its payload
    entries = {e.key: e for e in inflight.stalled(redis_client, older_than=0)}
    assert set(entries) == {*bad, "orphan", good.message_id}
    assert entries[good.message_id].error is None
    assert all(entries[key].error for key in [*bad, "orphan"])
    assert entries["not-json"].raw == "{nope"

    for key in [*bad, "orphan"]:
        inflight.move_aside(redis_client, entries[key], entries[key].error or "")
    assert [e.key for e in inflight.stalled(redis_client, older_than=0)] == [good.message_id]
    assert inflight.unreadable_count(redis_client) == len(bad) + 1
    assert "{nope" in redis_client.hget(inflight.UNREADABLE_KEY, "not-json")
    redis_client.delete(inflight.LEDGER_KEY, inflight.MESSAGES_KEY, inflight.UNREADABLE_KEY)
