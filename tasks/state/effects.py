"""Effect markers and per-key locks: how a redelivered step avoids repeating its side effect.

Late acks mean any step can run again after a crash, a lost ack or a Kafka redelivery. Each step
with a side effect records ``done:{message_id}:{step}`` in Redis:

* ``started`` just before the side effect: a later run that finds it knows the effect MAY have
  happened (the worker died in flight) and must look the result up instead of repeating blindly;
* ``done`` with the step's JSON result just after it: a later run returns that result unchanged.

Locks are redis-py's :class:`redis.lock.Lock` (``SET NX PX`` with a random token, released by a Lua
script that deletes only our own token), so a lock that expired and was taken by another worker is
never released by us. They are leases: a short expiry that a keep-alive thread renews while the holder
lives. A holder killed with ``kill -9`` therefore blocks the others for one lease (seconds), not for
the worst case of the block it was running (with fixed expiries of 60-90 s the kill -9 scenario spent
most of its recovery time waiting for dead workers' locks).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

import redis
from loguru import logger
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from tasks.errors import LockBusyError
from tasks.state import keys

MARKER_PREFIX = keys.DONE_PREFIX
LOCK_PREFIX = keys.LOCK_PREFIX
DEFAULT_MARKER_TTL = 14 * 24 * 3600  # longer than any Kafka redelivery or dead-letter replay window
LEASE = 10.0  # seconds a lock outlives a dead holder; a live one renews it every LEASE / 3


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


def clear_started(client: redis.Redis, message_id: str, step: str) -> None:
    """Forget a ``started`` marker whose side effect certainly did not run (the portal refused the
    request before running it, or refused this one element), so the next run posts without first
    searching for a post that cannot exist. A ``done`` marker is never cleared."""
    previous = recall(client, message_id, step)
    if previous is not None and not previous.done:
        client.delete(marker_key(message_id, step))


@contextmanager
def locked(
    client: redis.Redis,
    name: str,
    *,
    timeout: float = LEASE,
    wait: float = 20.0,
) -> Iterator[None]:
    """Hold the lock ``rdb24:lock:{name}`` for the block, however long the block runs.

    ``timeout`` is the lease: renewed every third of it while we live, so it only bounds how long a
    dead holder blocks the others. ``wait`` bounds how long we queue behind a live holder before
    giving the task back to Celery with a retry.
    """
    # thread_local=False: the keep-alive thread must see the token the acquiring thread got.
    lock = client.lock(
        f"{LOCK_PREFIX}:{name}", timeout=timeout, blocking=True, blocking_timeout=wait, thread_local=False
    )
    if not lock.acquire():
        raise LockBusyError(f"lock {name!r} busy for more than {wait:g}s", retry_after=1.0)
    stop = threading.Event()
    keeper = threading.Thread(target=_keep_alive, args=(lock, name, timeout, stop), daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()
        # If it expired it may belong to someone else now: the Lua release leaves their token alone.
        with suppress(LockError):
            lock.release()


def _keep_alive(lock: Lock, name: str, lease: float, stop: threading.Event) -> None:
    """Renew the lease until ``stop``; a renewal that fails for a moment (Redis blip) is tried again."""
    while not stop.wait(lease / 3):
        try:
            lock.reacquire()
        except LockNotOwnedError:
            logger.error("lock {!r} expired while held (Redis unreachable longer than its lease?)", name)
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("could not renew lock {!r}: {}; trying again", name, exc)


def is_locked(client: redis.Redis, name: str) -> bool:
    """Whether someone holds ``name`` right now (a hint only: it may change the next moment)."""
    return bool(client.exists(f"{LOCK_PREFIX}:{name}"))


def phone_lock_name(phone: str) -> str:
    return f"phone:{phone}"


@contextmanager
def phone_lock(
    client: redis.Redis, phone: str, *, timeout: float = LEASE, wait: float = 20.0
) -> Iterator[None]:
    """Serialise "find or create" for one normalised phone across every worker process."""
    with locked(client, phone_lock_name(phone), timeout=timeout, wait=wait):
        yield


__all__ = [
    "LEASE",
    "Marker",
    "clear_started",
    "is_locked",
    "locked",
    "mark_done",
    "mark_started",
    "marker_key",
    "phone_lock",
    "phone_lock_name",
    "recall",
]
