"""New subscribers' contacts, found and created many at a time.

A burst of first-time writers used to cost two requests each (``findbycomm``, ``crm.contact.add``) at
the portal's 2 requests/s. Here each contact step for an uncached phone joins a pending set
(``CONTACT_PENDING``: phone -> the fields to create it with) and one of them, the first to take the
``contact-batch`` lease, waits ``CONTACT_BATCH_WINDOW`` for others to join and then resolves the
whole set:

1. it takes the **per-phone lock** of every pending phone it can (a busy one is someone creating it
   one by one: left for them);
2. one ``batch`` of ``findbycomm`` (20 phones per command, 50 commands per request) finds the
   phones that already have a contact, inside the locks, as the one-by-one path does;
3. the others are created with ``batch`` ``crm.contact.add`` (50 per request); each id goes to the
   ``phone -> contact`` cache, which is what the waiting steps watch.

A batch that failed or answered ambiguously creates nothing twice: the phones stay pending and the
next round looks them up again before creating. A step whose phone was not resolved within
``WAIT`` falls back to the one-by-one path (:func:`tasks.flows.contact.ensure_contact`), which
raises the portal's error for the task's retry policy.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from typing import Any, Protocol

import redis
from loguru import logger

from clients.errors import IntegrationError
from schemas.bitrix24 import BatchResult
from tasks.errors import LockBusyError
from tasks.state import effects, keys

PENDING_KEY = keys.CONTACT_PENDING
CREATED_PREFIX = f"{keys.CONTACT_PENDING}:created"  # string <prefix>:<phone>: "1", expiring
RESOLVER_LOCK = "contact-batch"
WAIT = 20.0  # seconds a step waits for a batch before resolving its phone alone
POLL = 0.05
MAX_PHONES = 500  # per round: 25 findbycomm commands, 10 creation batches at most
CREATE_BATCH = 50
GATHER_MAX = 1.0  # seconds per request a round may gather while the portal's bucket is full


class BatchDirectory(Protocol):
    """The part of ``Bitrix24Client`` this module uses."""

    def find_contacts_by_phone(self, phones: Any) -> dict[str, list[int]]: ...

    def batch(self, commands: Any, halt: bool = False) -> BatchResult: ...


def _cache_key(phone: str) -> str:
    return f"{keys.CONTACT_BY_PHONE_PREFIX}:{phone}"


def _cached(cache: redis.Redis, phone: str) -> int | None:
    raw = cache.get(_cache_key(phone))
    return int(raw) if raw is not None else None


def _remember(cache: redis.Redis, phone: str, contact_id: int, ttl: int, *, created: bool) -> None:
    pipe = cache.pipeline(transaction=False)
    pipe.set(_cache_key(phone), contact_id, ex=ttl)
    if created:
        pipe.set(f"{CREATED_PREFIX}:{phone}", "1", ex=120)
    pipe.hdel(PENDING_KEY, phone)
    pipe.execute()


def _create_all(
    directory: BatchDirectory, cache: redis.Redis, missing: dict[str, dict[str, Any]], ttl: int
) -> None:
    phones = list(missing)
    for start in range(0, len(phones), CREATE_BATCH):
        chunk = phones[start : start + CREATE_BATCH]
        commands = {
            f"c{index}": (
                "crm.contact.add",
                {"fields": missing[phone], "params": {"REGISTER_SONET_EVENT": "N"}},
            )
            for index, phone in enumerate(chunk)
        }
        answer = directory.batch(commands)
        for index, phone in enumerate(chunk):
            created = answer.results.get(f"c{index}")
            if created:
                _remember(cache, phone, int(created), ttl, created=True)
            elif f"c{index}" in answer.errors:
                logger.warning("batched crm.contact.add refused for a phone: {}", answer.errors[f"c{index}"])
                cache.hdel(PENDING_KEY, phone)  # its step falls back to the one-by-one path


def resolve_pending(directory: BatchDirectory, cache: redis.Redis, ttl: int) -> int:
    """One round over the pending phones (see the module doc); returns how many were resolved."""
    pending = {
        (k.decode() if isinstance(k, bytes) else k): json.loads(v)
        for k, v in list(cache.hgetall(PENDING_KEY).items())[:MAX_PHONES]
    }
    if not pending:
        return 0
    with ExitStack() as held:
        mine: dict[str, dict[str, Any]] = {}
        for phone, fields in pending.items():
            if _cached(cache, phone) is not None:
                cache.hdel(PENDING_KEY, phone)
                continue
            try:
                held.enter_context(effects.phone_lock(cache, phone, wait=0.01))
            except LockBusyError:
                continue  # someone creates it one by one right now
            mine[phone] = fields
        if not mine:
            return 0
        found = directory.find_contacts_by_phone(list(mine))
        for phone, ids in found.items():
            if ids and phone in mine:
                _remember(cache, phone, min(ids), ttl, created=False)
                del mine[phone]
        if mine:
            _create_all(directory, cache, mine, ttl)
    logger.info("contact batch: {} phone(s) resolved", len(pending))
    return len(pending)


def _gather(directory: BatchDirectory, window: float) -> float:
    """The window scaled by how full the bucket is (none while it is empty: requests are cheap),
    then as for posts (:func:`tasks.flows.post_batch.gather_wait`), a round costing two requests."""
    pressure = getattr(directory, "rate_pressure", None)
    if not callable(pressure):
        return window
    wait, used = (float(v) for v in pressure())
    scaled = window * min(1.0, max(0.0, used) * 2)
    return min(5.0, scaled + max(wait, min(1.0, used) * GATHER_MAX * 2))


def announce(cache: redis.Redis, phone: str, fields: dict[str, Any]) -> None:
    """Put a phone without a cached contact in the pending set ahead of its contact step.

    Called by the chain's first step: a contact step holds a worker thread while it waits, so
    without this a batch could only ever hold as many phones as there are threads; announced early,
    a burst of new subscribers is resolved in a few requests whatever the concurrency.
    """
    if _cached(cache, phone) is None:
        cache.hsetnx(PENDING_KEY, phone, json.dumps(fields, ensure_ascii=False))


def ensure_contact_batched(
    directory: BatchDirectory,
    cache: redis.Redis,
    phone: str,
    fields: dict[str, Any],
    *,
    window: float,
    ttl: int,
) -> tuple[int, bool] | None:
    """The phone's contact id (and whether it was created) through a shared batch, or None after
    ``WAIT`` (then the caller resolves it alone)."""
    found = _cached(cache, phone)
    if found is not None:
        return found, False
    cache.hset(PENDING_KEY, phone, json.dumps(fields, ensure_ascii=False))
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            with effects.locked(cache, RESOLVER_LOCK, wait=0.01):
                # Let the others of this burst join, the longer the fuller the portal's bucket.
                time.sleep(_gather(directory, window))
                resolve_pending(directory, cache, ttl)
        except LockBusyError:
            pass  # another step resolves this round; ours is in it or in the next
        except IntegrationError as exc:
            logger.warning("contact batch failed ({}); the phones stay pending", exc)
        found = _cached(cache, phone)
        if found is not None:
            created = bool(cache.getdel(f"{CREATED_PREFIX}:{phone}"))
            return found, created
        if not cache.hexists(PENDING_KEY, phone):
            return None  # refused in the batch: resolve alone
        time.sleep(POLL)
    cache.hdel(PENDING_KEY, phone)
    return None


__all__ = ["announce", "ensure_contact_batched", "resolve_pending"]
