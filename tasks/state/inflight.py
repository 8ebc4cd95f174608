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
The payload is the one copy of the work the sweep can publish again, so it keeps the message text;
effect markers keep ids and hashes only.

Settling also leaves a receipt, ``rdb24:inflight:settled:<key>`` = when (unix seconds), kept
``SETTLED_RECEIPT_TTL``. The Kafka ingest worker commits a record's offset only once it has seen that
receipt (:func:`settlement`): an entry merely *missing* from the ledger may be one that a Redis restarted
from an older snapshot never had, and committing past it would lose the message for good.

An entry the sweep cannot read (not JSON, no kind, a payload of an incompatible version, or a ledger
member without its payload) would keep its old score and, oldest first, fill every sweep's window
until no good entry behind it is ever resent. :func:`move_aside` takes it out of the ledger into
``rdb24:inflight:unreadable`` (hash, key -> ``{"raw", "error", "at"}``) in one transaction; the sweep
also stores it as a dead letter, and ``rdb24 status`` shows the count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis
from pydantic import BaseModel

from tasks.state import keys

LEDGER_KEY = keys.INFLIGHT_LEDGER
MESSAGES_KEY = keys.INFLIGHT_MESSAGES
UNREADABLE_KEY = keys.INFLIGHT_UNREADABLE
MESSAGE = "message"  # a subscriber message's chain (key: its Kafka message id)
REPLY = "reply"  # an operator reply's delivery (key: reply:<im chat id>:<im message id>)
SETTLED_PREFIX = keys.INFLIGHT_SETTLED_PREFIX
# Receipts outlive any uncommitted Kafka tail by far; an expired one only costs a harmless re-enqueue.
SETTLED_RECEIPT_TTL = 2 * 24 * 3600


class Settlement(StrEnum):
    """What Redis says about one key the ingest worker enqueued."""

    IN_FLIGHT = "in_flight"  # in the ledger: the chain (or the resend sweep) will finish it
    SETTLED = "settled"  # posted or dead-lettered: its offset may be committed
    UNKNOWN = "unknown"  # neither: Redis lost the entry (restarted from an older snapshot): enqueue again


@dataclass(frozen=True)
class InFlight:
    key: str
    kind: str
    payload: dict[str, Any]
    raw: str | None = None  # the stored entry as it was, kept when it cannot be read
    error: str | None = None  # why it cannot be read (None: readable)

    @property
    def message_id(self) -> str:
        return self.key


def track(client: redis.Redis, key: str, kind: str, payload: BaseModel) -> None:
    """Record the work as in flight (again: a resend restarts its clock)."""
    entry = json.dumps({"kind": kind, "payload": payload.model_dump(mode="json")}, ensure_ascii=False)
    with client.pipeline() as pipe:
        pipe.hset(MESSAGES_KEY, key, entry)
        pipe.zadd(LEDGER_KEY, {key: time.time()})
        pipe.execute()


def settle(client: redis.Redis, key: str) -> None:
    """Done, or accounted for in the dead-letter store: nothing left to watch; leave the receipt."""
    with client.pipeline() as pipe:  # MULTI/EXEC: the entry never disappears without its receipt
        pipe.zrem(LEDGER_KEY, key)
        pipe.hdel(MESSAGES_KEY, key)
        pipe.set(receipt_key(key), f"{time.time():.3f}", ex=SETTLED_RECEIPT_TTL)
        pipe.execute()


def receipt_key(key: str) -> str:
    return f"{SETTLED_PREFIX}:{key}"


def settlement(client: redis.Redis, keys_: Sequence[str]) -> list[tuple[Settlement, float | None]]:
    """For each key: in flight, settled (with when, unix seconds) or unknown; one round trip."""
    if not keys_:
        return []
    with client.pipeline(transaction=False) as pipe:
        pipe.mget([receipt_key(k) for k in keys_])
        pipe.zmscore(LEDGER_KEY, list(keys_))
        receipts, scores = pipe.execute()
    found: list[tuple[Settlement, float | None]] = []
    for receipt, score in zip(receipts, scores, strict=True):
        if receipt is not None:
            found.append((Settlement.SETTLED, float(receipt)))
        elif score is not None:
            found.append((Settlement.IN_FLIGHT, None))
        else:
            found.append((Settlement.UNKNOWN, None))
    return found


def stalled(client: redis.Redis, older_than: float, limit: int = 500) -> list[InFlight]:
    """Work in flight for more than ``older_than`` seconds, oldest first (at most ``limit``).

    Never raises over an entry's content: one that cannot be read comes back with ``error`` set.
    """
    # redis-py types every range reply as one union; without withscores it is the members alone.
    keys = cast(
        "list[bytes | str]",
        client.zrangebyscore(LEDGER_KEY, "-inf", time.time() - older_than, start=0, num=limit),
    )
    if not keys:
        return []
    found = []
    for key, raw in zip(keys, client.hmget(MESSAGES_KEY, keys), strict=True):
        name = _text(key)
        if raw is None and not _orphan(client, name):  # settled between the two reads
            continue
        found.append(_entry(name, None if raw is None else _text(raw)))
    return found


def _orphan(client: redis.Redis, key: str) -> bool:
    """Still in the ledger without a payload (read in one transaction: not a settle in between)."""
    with client.pipeline() as pipe:
        pipe.zscore(LEDGER_KEY, key)
        pipe.hexists(MESSAGES_KEY, key)
        score, has_payload = pipe.execute()
    return score is not None and not has_payload


def _entry(key: str, raw: str | None) -> InFlight:
    if raw is None:
        return InFlight(key=key, kind="", payload={}, error="in the ledger without a payload")
    try:
        entry = json.loads(raw)
        kind, payload = entry["kind"], entry["payload"]
        if not isinstance(kind, str) or not isinstance(payload, dict):
            raise TypeError("kind must be text and payload an object")
    except (ValueError, KeyError, TypeError) as exc:
        return InFlight(key=key, kind="", payload={}, raw=raw, error=f"{type(exc).__name__}: {exc}"[:300])
    return InFlight(key=key, kind=kind, payload=payload, raw=raw)


def move_aside(client: redis.Redis, entry: InFlight, error: str) -> None:
    """Out of the ledger (the sweep's window) into ``rdb24:inflight:unreadable``, in one transaction."""
    kept = json.dumps(
        {"raw": entry.raw, "kind": entry.kind, "error": error, "at": time.time()}, ensure_ascii=False
    )
    with client.pipeline() as pipe:
        pipe.hset(UNREADABLE_KEY, entry.key, kept)
        pipe.zrem(LEDGER_KEY, entry.key)
        pipe.hdel(MESSAGES_KEY, entry.key)
        pipe.execute()


def unreadable_count(client: redis.Redis) -> int:
    return int(client.hlen(UNREADABLE_KEY))


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
    "SETTLED_PREFIX",
    "SETTLED_RECEIPT_TTL",
    "UNREADABLE_KEY",
    "InFlight",
    "Settlement",
    "count",
    "move_aside",
    "oldest_age",
    "receipt_key",
    "settle",
    "settlement",
    "stalled",
    "track",
    "unreadable_count",
]
