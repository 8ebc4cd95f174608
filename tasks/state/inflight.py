"""The ledger of messages in flight: the last line of "nothing is lost".

Late acks, the restore sweep and Kafka offsets cover crashes at almost every point, but a few windows
remain where a task message exists only in one process's memory (kombu takes it off its queue one
round trip before it records it as unacked; a message held through a Redis outage): ``kill -9``
there loses it, and no queue, ``unacked`` record or dead letter is left to show it.

So each unit of work that must not vanish is written here before its task is published (``track``)
and struck out when it is done or became a dead letter (``settle``): a subscriber message (kind
``message``, key = its Kafka id, until its post) and an operator reply (kind ``reply``, key =
``reply:<chat>:<message>``, until its delivery is reported). ``flows.resend_stalled_messages``
(beat, every ``STALLED_SWEEP_INTERVAL`` seconds) publishes again whatever is still here after
``STALLED_MESSAGE_AFTER`` seconds. A resend of work that was merely slow is harmless: every step's
effect marker and lock make the second run return the first one's results.

Redis layout: ``rdb24:inflight`` (sorted set, member = key, score = when tracked or last resent) and
``rdb24:inflight:messages`` (hash, key -> ``{"kind": ..., "payload": ...}`` JSON, what to resend).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, cast

import redis
from pydantic import BaseModel

from tasks.state import keys

LEDGER_KEY = keys.INFLIGHT_LEDGER
MESSAGES_KEY = keys.INFLIGHT_MESSAGES
MESSAGE = "message"  # a subscriber message's chain (key: its Kafka message id)
REPLY = "reply"  # an operator reply's delivery (key: reply:<im chat id>:<im message id>)


@dataclass(frozen=True)
class InFlight:
    key: str
    kind: str
    payload: dict[str, Any]


def track(client: redis.Redis, key: str, kind: str, payload: BaseModel) -> None:
    """Record the work as in flight (again: a resend restarts its clock)."""
    entry = json.dumps({"kind": kind, "payload": payload.model_dump(mode="json")}, ensure_ascii=False)
    with client.pipeline() as pipe:
        pipe.hset(MESSAGES_KEY, key, entry)
        pipe.zadd(LEDGER_KEY, {key: time.time()})
        pipe.execute()


def settle(client: redis.Redis, key: str) -> None:
    """Done, or accounted for in the dead-letter store: nothing left to watch."""
    with client.pipeline() as pipe:
        pipe.zrem(LEDGER_KEY, key)
        pipe.hdel(MESSAGES_KEY, key)
        pipe.execute()


def stalled(client: redis.Redis, older_than: float, limit: int = 500) -> list[InFlight]:
    """Work in flight for more than ``older_than`` seconds, oldest first (at most ``limit``)."""
    # redis-py types every range reply as one union; without withscores it is the members alone.
    keys = cast(
        "list[bytes | str]",
        client.zrangebyscore(LEDGER_KEY, "-inf", time.time() - older_than, start=0, num=limit),
    )
    if not keys:
        return []
    found = []
    for key, raw in zip(keys, client.hmget(MESSAGES_KEY, keys), strict=True):
        if raw is None:  # settled between the two reads
            continue
        entry = json.loads(raw)
        found.append(InFlight(key=_text(key), kind=entry["kind"], payload=entry["payload"]))
    return found


def count(client: redis.Redis) -> int:
    return int(client.zcard(LEDGER_KEY))


def oldest_age(client: redis.Redis) -> float | None:
    """Seconds the oldest entry has been in flight (None when none is)."""
    # withscores: (member, score) pairs, scores as floats (redis-py types every range reply as one union).
    oldest = cast("list[tuple[bytes | str, float]]", client.zrange(LEDGER_KEY, 0, 0, withscores=True))
    return max(0.0, time.time() - oldest[0][1]) if oldest else None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


__all__ = [
    "LEDGER_KEY",
    "MESSAGE",
    "MESSAGES_KEY",
    "REPLY",
    "InFlight",
    "count",
    "oldest_age",
    "settle",
    "stalled",
    "track",
]
