"""Each subscriber's messages not yet posted, in the order they were written.

RosDomofon does not key its Kafka records, so one subscriber's messages may sit in different
partitions and reach the post step in any order; a retried post (503, rate limit, busy lock) lets
a later message overtake it too. So every message with a record timestamp enters its subscriber's
queue when its chain starts (:func:`enter`) and leaves it when it is posted or dead-lettered
(:func:`leave`, :func:`release`); the post step asks for the messages written before it that are
still here (:func:`earlier`) and waits while there are any, at most ``ORDER_WAIT_MAX`` seconds
counted from its first wait (:func:`waiting_since`).

Redis layout, per subscriber: ``rdb24:order:<abonent id>`` (sorted set, member = message id,
score = record timestamp in unix seconds; equal timestamps are ordered by message id) and
``rdb24:order:<abonent id>:waiting`` (hash, message id -> when it first waited). Both expire with
the effect markers, so a subscriber who stops writing leaves nothing behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, cast

import redis

from tasks.state.keys import ORDER_PREFIX


def queue_key(abonent_id: int) -> str:
    return f"{ORDER_PREFIX}:{abonent_id}"


def waiting_key(abonent_id: int) -> str:
    return f"{queue_key(abonent_id)}:waiting"


def enter(client: redis.Redis, abonent_id: int, message_id: str, sent_at: float, *, ttl: int) -> None:
    """The message is pending in its subscriber's queue (again, on a resend: same score)."""
    with client.pipeline() as pipe:
        pipe.zadd(queue_key(abonent_id), {message_id: sent_at})
        pipe.expire(queue_key(abonent_id), ttl)
        pipe.execute()


def leave(client: redis.Redis, abonent_id: int, message_id: str) -> None:
    """Posted or dead-lettered: later messages no longer wait for it."""
    with client.pipeline() as pipe:
        pipe.zrem(queue_key(abonent_id), message_id)
        pipe.hdel(waiting_key(abonent_id), message_id)
        pipe.execute()


def release(client: redis.Redis, message_id: str, payload: Mapping[str, Any]) -> None:
    """:func:`leave` for a chain step's payload (the subscriber is in it, or in its ``message``)."""
    abonent_id = abonent_of(payload)
    if abonent_id is not None:
        leave(client, abonent_id, message_id)


def abonent_of(payload: Mapping[str, Any]) -> int | None:
    nested = payload.get("message")
    source = nested if isinstance(nested, Mapping) else payload
    value = source.get("abonent_id")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def earlier(client: redis.Redis, abonent_id: int, message_id: str, sent_at: float) -> list[str]:
    """The subscriber's pending messages written before this one, oldest first."""
    rows = cast(
        "list[tuple[bytes | str, float]]",
        client.zrangebyscore(queue_key(abonent_id), "-inf", sent_at, withscores=True),
    )
    found = []
    for member, score in rows:
        other = member.decode() if isinstance(member, bytes) else str(member)
        if other != message_id and (score < sent_at or other < message_id):
            found.append(other)
    return found


def park(
    client: redis.Redis, abonent_id: int, message_id: str, payload: Mapping[str, Any], *, ttl: int
) -> float:
    """Record that the message waits (with what its post needs); returns when it first waited."""
    key = waiting_key(abonent_id)
    now = time.time()
    entry = json.dumps({"since": now, "payload": dict(payload)}, ensure_ascii=False)
    with client.pipeline() as pipe:
        pipe.hsetnx(key, message_id, entry)
        pipe.hget(key, message_id)
        pipe.expire(key, ttl)
        _, stored, _ = pipe.execute()
    try:
        return float(json.loads(stored)["since"]) if stored is not None else now
    except (ValueError, KeyError, TypeError):
        return now


def unpark(client: redis.Redis, abonent_id: int, message_id: str) -> None:
    """The message waits no more (its turn came, or it gave up waiting)."""
    client.hdel(waiting_key(abonent_id), message_id)


def next_parked(client: redis.Redis, abonent_id: int) -> tuple[str, dict[str, Any]] | None:
    """The subscriber's oldest pending message and its post payload, if it is parked waiting."""
    head = client.zrange(queue_key(abonent_id), 0, 0)
    if not head:
        return None
    message_id = head[0].decode() if isinstance(head[0], bytes) else str(head[0])
    stored = client.hget(waiting_key(abonent_id), message_id)
    if stored is None:
        return None
    try:
        payload = json.loads(stored)["payload"]
    except (ValueError, KeyError, TypeError):
        return None
    return (message_id, payload) if isinstance(payload, dict) else None


def pending(client: redis.Redis, abonent_id: int) -> list[str]:
    """Every pending message of the subscriber, oldest first (for tests and ``rdb24 status``)."""
    members = client.zrange(queue_key(abonent_id), 0, -1)
    return [m.decode() if isinstance(m, bytes) else str(m) for m in members]


__all__ = [
    "ORDER_PREFIX",
    "abonent_of",
    "earlier",
    "enter",
    "leave",
    "next_parked",
    "park",
    "pending",
    "queue_key",
    "release",
    "unpark",
    "waiting_key",
]
