"""The per-dialog order of operator replies in Redis (``tasks/state/reply_order.py``), on a real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from tasks.flows.operator_reply import order_wait
from tasks.settings import Settings
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


@pytest.mark.parametrize(
    ("wait", "retries", "cap", "expected"),
    [
        (60.0, 50, 300.0, (2.4, 60.0)),  # the defaults: 25 looks 2.4 s apart
        (60.0, 10, 5.0, (5.0, 25.0)),  # a small budget shortens the wait instead of dead-lettering
        (6.0, 10, 5.0, (1.2, 6.0)),
        (1.0, 50, 300.0, (1.0, 1.0)),  # never more often than once a second
    ],
)
def test_the_order_wait_always_fits_in_half_the_rate_limit_budget(
    wait: float, retries: int, cap: float, expected: tuple[float, float]
) -> None:
    settings = Settings(
        REDIS_URL="redis://127.0.0.1:6379/0",
        REPLY_ORDER_WAIT=wait,
        MAX_RATE_LIMIT_RETRIES=retries,
        RATE_LIMIT_WAIT_MAX=cap,
    )
    poll, bound = order_wait(settings)
    assert (round(poll, 3), round(bound, 3)) == expected
    assert bound <= poll * (retries // 2)
