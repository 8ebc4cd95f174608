"""The ledger of subscriber messages in flight: the last line of "nothing is lost".

Late acks, the restore sweep and Kafka offsets cover crashes at almost every point, but a few windows
remain where a task message exists only in one process's memory (kombu takes it off its queue one
round trip before it records it as unacked; a message held through a Redis outage): ``kill -9``
there loses it, and no queue, ``unacked`` record or dead letter is left to show it.

So every message is written here before its chain is published (``track``) and struck out when its
post is done or it became a dead letter (``settle``). ``flows.resend_stalled_messages`` (beat, every
``STALLED_SWEEP_INTERVAL`` seconds) starts the chain again for any message still here after
``STALLED_MESSAGE_AFTER`` seconds. A resend of a message that was merely slow is harmless: every
step's effect marker and lock make the second run return the first one's results.

Redis layout: ``rdb24:inflight`` (sorted set, member message id, score = when tracked or last resent)
and ``rdb24:inflight:messages`` (hash, message id -> the ``SubscriberMessage`` JSON to resend).
"""

from __future__ import annotations

import time

import redis

from schemas.flows import SubscriberMessage

LEDGER_KEY = "rdb24:inflight"
MESSAGES_KEY = "rdb24:inflight:messages"


def track(client: redis.Redis, message: SubscriberMessage) -> None:
    """Record the message as in flight (again: a re-enqueue restarts its clock)."""
    with client.pipeline() as pipe:
        pipe.hset(MESSAGES_KEY, message.message_id, message.model_dump_json())
        pipe.zadd(LEDGER_KEY, {message.message_id: time.time()})
        pipe.execute()


def settle(client: redis.Redis, message_id: str) -> None:
    """The message reached its chat or the dead-letter store: nothing left to watch."""
    with client.pipeline() as pipe:
        pipe.zrem(LEDGER_KEY, message_id)
        pipe.hdel(MESSAGES_KEY, message_id)
        pipe.execute()


def stalled(client: redis.Redis, older_than: float, limit: int = 500) -> list[SubscriberMessage]:
    """Messages in flight for more than ``older_than`` seconds, oldest first (at most ``limit``)."""
    ids = client.zrangebyscore(LEDGER_KEY, "-inf", time.time() - older_than, start=0, num=limit)
    if not ids:
        return []
    # None: settled between the two reads
    return [
        SubscriberMessage.model_validate_json(raw)
        for raw in client.hmget(MESSAGES_KEY, ids)
        if raw is not None
    ]


def count(client: redis.Redis) -> int:
    return int(client.zcard(LEDGER_KEY))


def oldest_age(client: redis.Redis) -> float | None:
    """Seconds the oldest message has been in flight (None when none is)."""
    oldest = client.zrange(LEDGER_KEY, 0, 0, withscores=True)
    return max(0.0, time.time() - oldest[0][1]) if oldest else None


__all__ = ["LEDGER_KEY", "MESSAGES_KEY", "count", "oldest_age", "settle", "stalled", "track"]
