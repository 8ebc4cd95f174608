"""Effect markers and per-key locks: how a redelivered step avoids repeating its side effect.

Late acks mean any step can run again after a crash, a lost ack or a Kafka redelivery. Each step
with a side effect records ``done:{message_id}:{step}`` in Redis:

* ``started`` just before the side effect: a later run that finds it knows the effect MAY have
  happened (the worker died in flight) and must look the result up instead of repeating blindly;
* ``done`` with the step's JSON result just after it: a later run returns that result unchanged.

Each marker also stores the message's ``fingerprint`` (the hash of its Kafka record value, see
:mod:`tasks.ingest.identity`). A marker found under the same id with another fingerprint was left by a
different message (an id reused: a fallback id after an offset reset, a hash-prefix collision, a
caller's own id given twice): it is logged, counted in ``rdb24_message_id_conflicts_total`` and
treated as absent, never as "already done". Markers hold ids, hashes and small results, never a
message text (Redis runs ``noeviction``: whole texts there would fill it).

Locks are redis-py's :class:`redis.lock.Lock` (``SET NX PX`` with a random token, released by a Lua
script that deletes only our own token), so a lock that expired and was taken by another worker is
never released by us. They are leases: a short expiry that a keep-alive thread renews while the holder
lives. A holder killed with ``kill -9`` therefore blocks the others for one lease (seconds), not for
the worst case of the block it was running (with fixed expiries of 60-90 s the kill -9 scenario spent
most of its recovery time waiting for dead workers' locks).

A lease alone does not fence: a holder that is stopped (SIGSTOP, container freeze, GC pause, Redis
unreachable) for longer than the lease wakes up believing it still holds the lock while a successor
works under it. So :func:`locked` yields a :class:`Lease`: the block calls :meth:`Lease.ensure_held`
immediately before each side effect (one ``GET`` comparing the lock key with our token; raises
:class:`~tasks.errors.LeaseLostError`, a retry-later error, when lost), and marker writes made under
a lease are a Lua compare-and-set on that token (:func:`mark_started` / :func:`mark_done` with
``lease=``): a holder that lost its lease can never overwrite its successor's marker. What the check
cannot close is a request already on the wire when the holder stopped; callers that create records
look them up again afterwards (``tasks.flows.contact``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

import redis
from loguru import logger
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from tasks.errors import LeaseLostError, LockBusyError
from tasks.state import keys

MARKER_PREFIX = keys.DONE_PREFIX
LOCK_PREFIX = keys.LOCK_PREFIX
DEFAULT_MARKER_TTL = 14 * 24 * 3600  # longer than any Kafka redelivery or dead-letter replay window
LEASE = 10.0  # seconds a lock outlives a dead holder; a live one renews it every LEASE / 3
KEEPER_JOIN_TIMEOUT = 5.0  # seconds we wait for the keep-alive thread at release; it never blocks longer

# Write KEYS[2] only while KEYS[1] (the lock) still holds our token: the fence on marker writes.
_WRITE_IF_HELD = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""


class Lease:
    """A held lock as its holder sees it: its key, our token, and whether the keeper saw it lapse."""

    def __init__(self, client: redis.Redis, name: str, lock: Lock) -> None:
        self.client = client
        self.name = name
        self.key = f"{LOCK_PREFIX}:{name}"
        self._lock = lock
        self._lost = threading.Event()

    @property
    def token(self) -> str:
        raw = self._lock.local.token
        if raw is None:
            return ""
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    def mark_lost(self) -> None:
        self._lost.set()

    def held(self) -> bool:
        """Whether the lock key still holds our token (asks Redis; a lapse seen by the keeper is final)."""
        if self._lost.is_set():
            return False
        current = self.client.get(self.key)
        if isinstance(current, bytes):
            current = current.decode()
        if current != self.token:
            self._lost.set()
            return False
        return True

    def ensure_held(self) -> None:
        """Call immediately before a side effect: raises ``LeaseLostError`` if someone else may hold it."""
        if not self.held():
            raise LeaseLostError(
                f"lease on lock {self.name!r} lost while held (stopped longer than its lease?); "
                "stopping before the next side effect",
                retry_after=1.0,
            )

    def write_if_held(self, key: str, value: str, ttl: int) -> bool:
        """``SET key value EX ttl`` only while we hold the lease (one atomic Lua step)."""
        if self._lost.is_set():
            return False
        done = bool(self.client.eval(_WRITE_IF_HELD, 2, self.key, key, self.token, value, int(ttl)))
        if not done:
            self._lost.set()
        return done


@dataclass(frozen=True)
class Marker:
    state: Literal["started", "done"]
    result: dict[str, Any] | None
    attempts: int
    at: float
    fingerprint: str | None = None

    @property
    def done(self) -> bool:
        return self.state == "done"


def marker_key(message_id: str, step: str) -> str:
    return f"{MARKER_PREFIX}:{message_id}:{step}"


def recall(client: redis.Redis, message_id: str, step: str, fingerprint: str | None = None) -> Marker | None:
    """The step's marker, or None when no run of it ever began (for a message with this fingerprint).

    With ``fingerprint``, a marker another message left under the same id counts as absent.
    """
    raw = client.get(marker_key(message_id, step))
    if raw is None:
        return None
    data = json.loads(raw)
    marker = Marker(
        state=data["state"],
        result=data.get("result"),
        attempts=int(data.get("attempts", 1)),
        at=data["at"],
        fingerprint=data.get("fingerprint"),
    )
    if fingerprint is not None and marker.fingerprint is not None and marker.fingerprint != fingerprint:
        _conflict(message_id, step, marker.fingerprint, fingerprint)
        return None
    return marker


def _conflict(message_id: str, step: str, found: str, expected: str) -> None:
    from tasks.runtime import metrics

    logger.error(
        "marker {}:{} was left by another message (fingerprint {} != {}): not taken as done",
        message_id, step, found[:12], expected[:12],
    )  # fmt: skip
    metrics.MESSAGE_ID_CONFLICTS.inc(step=step)


def _write_marker(
    client: redis.Redis, message_id: str, step: str, body: dict[str, Any], ttl: int, lease: Lease | None
) -> None:
    key, value = marker_key(message_id, step), json.dumps(body)
    if lease is None:
        client.set(key, value, ex=ttl)
    elif not lease.write_if_held(key, value, ttl):
        raise LeaseLostError(
            f"lease on lock {lease.name!r} lost: {body['state']} marker of {step!r} not written "
            "(the lock's new holder owns the marker now)",
            retry_after=1.0,
        )


def mark_started(
    client: redis.Redis,
    message_id: str,
    step: str,
    *,
    ttl: int = DEFAULT_MARKER_TTL,
    fingerprint: str | None = None,
    lease: Lease | None = None,
) -> Marker | None:
    """Record that the side effect is about to run; returns the marker a previous run left, if any.

    A ``done`` marker is never downgraded: the caller should have returned its result already. A
    marker of another message (other ``fingerprint``) is overwritten as if absent. With ``lease`` the
    write happens only while we hold it (else ``LeaseLostError``).
    """
    previous = recall(client, message_id, step, fingerprint)
    if previous is not None and previous.done:
        return previous
    attempts = (previous.attempts + 1) if previous is not None else 1
    body = {"state": "started", "attempts": attempts, "at": time.time(), "fingerprint": fingerprint}
    _write_marker(client, message_id, step, body, ttl, lease)
    return previous


def mark_done(
    client: redis.Redis,
    message_id: str,
    step: str,
    result: dict[str, Any],
    *,
    ttl: int = DEFAULT_MARKER_TTL,
    fingerprint: str | None = None,
    lease: Lease | None = None,
) -> None:
    """Store the step's result; every later run of the step returns it without repeating the effect.

    With ``lease`` the write happens only while we hold it: a holder that lost its lease raises
    ``LeaseLostError`` instead of overwriting what its successor recorded; its retry then reads the
    successor's marker, or finds its own effect through the step's look-up.
    """
    previous = recall(client, message_id, step, fingerprint)
    attempts = previous.attempts if previous is not None else 1
    body = {
        "state": "done",
        "result": result,
        "attempts": attempts,
        "at": time.time(),
        "fingerprint": fingerprint,
    }
    _write_marker(client, message_id, step, body, ttl, lease)


@contextmanager
def locked(
    client: redis.Redis,
    name: str,
    *,
    timeout: float = LEASE,
    wait: float = 20.0,
) -> Iterator[Lease]:
    """Hold the lock ``rdb24:lock:{name}`` for the block, however long the block runs.

    ``timeout`` is the lease: renewed every third of it while we live, so it only bounds how long a
    dead holder blocks the others. ``wait`` bounds how long we queue behind a live holder before
    giving the task back to Celery with a retry. The block gets the :class:`Lease` and calls
    ``lease.ensure_held()`` before each side effect.
    """
    # thread_local=False: the keep-alive thread must see the token the acquiring thread got.
    lock = client.lock(
        f"{LOCK_PREFIX}:{name}", timeout=timeout, blocking=True, blocking_timeout=wait, thread_local=False
    )
    if not lock.acquire():
        raise LockBusyError(f"lock {name!r} busy for more than {wait:g}s", retry_after=1.0)
    lease = Lease(client, name, lock)
    stop = threading.Event()
    keeper = threading.Thread(target=_keep_alive, args=(lock, lease, timeout, stop), daemon=True)
    keeper.start()
    try:
        yield lease
    finally:
        stop.set()
        # Bounded: a renewal stuck on a half-open connection ends at the socket timeout, and the
        # keeper is a daemon, so the task never waits on it for longer than this.
        keeper.join(timeout=KEEPER_JOIN_TIMEOUT)
        if keeper.is_alive():
            logger.warning("lock {!r}: keep-alive thread still busy at release; leaving it", name)
        # If it expired it may belong to someone else now: the Lua release leaves their token alone.
        with suppress(LockError):
            try:
                lock.release()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # The block's work is done; the lease lapses by itself within ``timeout``. Raising
                # here would turn a finished step into a retry, or hide the block's own error.
                logger.warning("lock {!r} not released ({}); it expires within {:g}s", name, exc, timeout)


def _keep_alive(lock: Lock, lease: Lease, period: float, stop: threading.Event) -> None:
    """Renew the lease until ``stop``; a renewal that fails for a moment (Redis blip) is tried again.

    A renewal that finds the lease gone marks it lost: the holder's next ``ensure_held`` (or fenced
    marker write) then stops the block instead of letting it carry on beside the new holder.
    """
    name = lease.name
    while not stop.wait(period / 3):
        try:
            lock.reacquire()
        except LockNotOwnedError:
            lease.mark_lost()
            logger.error("lock {!r} expired while held (stopped or Redis away longer than its lease)", name)
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("could not renew lock {!r}: {}; trying again", name, exc)


@contextmanager
def locked_free(client: redis.Redis, names: Iterable[str], *, timeout: float = LEASE) -> Iterator[set[str]]:
    """Hold those of the locks ``names`` that are free right now; yields the names held.

    For a batch writer that must not queue behind each holder in turn (reconciliation creating 50
    contacts in one request): what is busy now is left to its holder and tried again later. One
    keep-alive thread renews every lease held; the same lock names as :func:`locked`.
    """
    held: dict[str, Lock] = {}
    for name in dict.fromkeys(names):
        lock = client.lock(f"{LOCK_PREFIX}:{name}", timeout=timeout, blocking=False, thread_local=False)
        if lock.acquire():
            held[name] = lock
    stop = threading.Event()
    keeper = threading.Thread(target=_keep_all_alive, args=(held, timeout, stop), daemon=True)
    if held:
        keeper.start()
    try:
        yield set(held)
    finally:
        stop.set()
        if held:
            keeper.join()
        for lock in held.values():
            with suppress(LockError):
                lock.release()


def _keep_all_alive(held: dict[str, Lock], lease: float, stop: threading.Event) -> None:
    lost: set[str] = set()
    while not stop.wait(lease / 3):
        for name, lock in held.items():
            if name in lost:
                continue
            try:
                lock.reacquire()
            except LockNotOwnedError:
                logger.error("lock {!r} expired while held (Redis unreachable longer than its lease?)", name)
                lost.add(name)
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
) -> Iterator[Lease]:
    """Serialise "find or create" for one normalised phone across every worker process."""
    with locked(client, phone_lock_name(phone), timeout=timeout, wait=wait) as lease:
        yield lease


__all__ = [
    "LEASE",
    "Lease",
    "Marker",
    "is_locked",
    "locked",
    "locked_free",
    "mark_done",
    "mark_started",
    "marker_key",
    "phone_lock",
    "phone_lock_name",
    "recall",
]
