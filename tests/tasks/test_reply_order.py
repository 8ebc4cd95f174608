"""The per-dialog order of operator replies in Redis (``tasks/state/reply_order.py``), on a real Redis."""

from __future__ import annotations

import time

import redis

from tasks.state import reply_order


def test_earlier_replies_are_those_written_before_and_still_pending(
    redis_client: redis.Redis, unique: str
) -> None:
    dialog = f"abonent-{unique}"
    for key, position in (("reply:1:30", 30), ("reply:1:10", 10), ("reply:1:20", 20)):
        reply_order.join(redis_client, dialog, key, position, ttl=60)
    reply_order.join(redis_client, dialog, "reply:1:10", 10, ttl=60)  # a resend joins again: no change
    assert reply_order.pending(redis_client, dialog) == ["reply:1:10", "reply:1:20", "reply:1:30"]
    assert reply_order.earlier(redis_client, dialog, "reply:1:30", 30) == ["reply:1:10", "reply:1:20"]
    assert reply_order.earlier(redis_client, dialog, "reply:1:10", 10) == []
    reply_order.leave(redis_client, dialog, "reply:1:10")
    assert reply_order.earlier(redis_client, dialog, "reply:1:30", 30) == ["reply:1:20"]
    assert 0 < redis_client.ttl(reply_order.pending_key(dialog)) <= 60


def test_the_wait_is_counted_from_the_first_wait(redis_client: redis.Redis, unique: str) -> None:
    dialog = f"abonent-{unique}"
    first = reply_order.waiting_since(redis_client, dialog, "reply:1:2", ttl=60)
    time.sleep(0.05)
    assert reply_order.waiting_since(redis_client, dialog, "reply:1:2", ttl=60) == first
    reply_order.leave(redis_client, dialog, "reply:1:2")
    assert reply_order.waiting_since(redis_client, dialog, "reply:1:2", ttl=60) > first
