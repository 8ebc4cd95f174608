"""Effect markers and per-key locks: how a redelivered step avoids repeating its side effect.

Late acks mean any step can run again after a crash, a lost ack or a Kafka redelivery. Each step
with a side effect records ``done:{message_id}:{step}`` in Redis:

* ``started`` just before the side effect: a later run that finds it knows the effect MAY have
  happened (the worker died in flight) and must look the result up instead of repeating blindly;
* ``done`` with the step's JSON result just after it: a later run returns that result unchanged.

Locks are redis-py's :class:`redis.lock.Lock` (``SET NX PX`` with a random token, released by a Lua
script that deletes only our own token), so a lock that expired and was taken by another worker is
never released by us.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

import redis
from redis.exceptions import LockError

from clients.errors import RetryLaterError

MARKER_PREFIX = "rdb24:done"
LOCK_PREFIX = "rdb24:lock"
DEFAULT_MARKER_TTL = 14 * 24 * 3600  # longer than any Kafka redelivery or dead-letter replay window


@dataclass(frozen=True)
class Marker:
    state: Literal["started", "done"]
    result: dict[str, Any] | None
    attempts: int
    at: float

    @property
    def done(self) -> bool:
        return self.state == "done"


def marker_key(message_id: str, step: str) -> str:
    return f"{MARKER_PREFIX}:{message_id}:{step}"


def recall(client: redis.Redis, message_id: str, step: str) -> Marker | None:
    """The step's marker, or None when no run of it ever began."""
    raw = client.get(marker_key(message_id, step))
    if raw is None:
        return None
    data = json.loads(raw)
    return Marker(
        state=data["state"], result=data.get("result"), attempts=int(data.get("attempts", 1)), at=data["at"]
    )


def mark_started(
    client: redis.Redis, message_id: str, step: str, *, ttl: int = DEFAULT_MARKER_TTL
) -> Marker | None:
    """Record that the side effect is about to run; returns the marker a previous run left, if any.

    A ``done`` marker is never downgraded: the caller should have returned its result already.
    """
    previous = recall(client, message_id, step)
    if previous is not None and previous.done:
        return previous
    attempts = (previous.attempts + 1) if previous is not None else 1
    body = {"state": "started", "attempts": attempts, "at": time.time()}
    client.set(marker_key(message_id, step), json.dumps(body), ex=ttl)
    return previous


def mark_done(
    client: redis.Redis,
    message_id: str,
    step: str,
    result: dict[str, Any],
    *,
    ttl: int = DEFAULT_MARKER_TTL,
) -> None:
    """Store the step's result; every later run of the step returns it without repeating the effect."""
    previous = recall(client, message_id, step)
    attempts = previous.attempts if previous is not None else 1
    body = {"state": "done", "result": result, "attempts": attempts, "at": time.time()}
    client.set(marker_key(message_id, step), json.dumps(body), ex=ttl)


class LockBusyError(RetryLaterError):
    """Another worker holds the lock for longer than we may wait: retry the task later."""

    service = "redis"


@contextmanager
def locked(
    client: redis.Redis,
    name: str,
    *,
    timeout: float = 60.0,
    wait: float = 20.0,
) -> Iterator[None]:
    """Hold the lock ``rdb24:lock:{name}`` for the block.

    ``timeout`` bounds how long a dead holder blocks others (keep it above the block's worst case:
    one API call with its timeout); ``wait`` bounds how long we queue behind a live holder before
    giving the task back to Celery with a retry.
    """
    lock = client.lock(f"{LOCK_PREFIX}:{name}", timeout=timeout, blocking=True, blocking_timeout=wait)
    if not lock.acquire():
        raise LockBusyError(f"lock {name!r} busy for more than {wait:g}s", retry_after=1.0)
    try:
        yield
    finally:
        # If it expired it may belong to someone else now: the Lua release leaves their token alone.
        with suppress(LockError):
            lock.release()


def is_locked(client: redis.Redis, name: str) -> bool:
    """Whether someone holds ``name`` right now (a hint only: it may change the next moment)."""
    return bool(client.exists(f"{LOCK_PREFIX}:{name}"))


def phone_lock_name(phone: str) -> str:
    return f"phone:{phone}"


@contextmanager
def phone_lock(
    client: redis.Redis, phone: str, *, timeout: float = 60.0, wait: float = 20.0
) -> Iterator[None]:
    """Serialise "find or create" for one normalised phone across every worker process."""
    with locked(client, phone_lock_name(phone), timeout=timeout, wait=wait):
        yield


__all__ = [
    "LockBusyError",
    "Marker",
    "is_locked",
    "locked",
    "mark_done",
    "mark_started",
    "marker_key",
    "phone_lock",
    "phone_lock_name",
    "recall",
]
