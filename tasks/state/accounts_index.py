"""Phone -> RosDomofon account index in Redis, shared by the message flow and reconciliation.

The RosDomofon API cannot search accounts by phone (only ``GET /accounts``, the whole list), so we
keep a hash ``rdb24:accounts:by_phone`` (owner phone -> :class:`AccountRef` JSON). Reconciliation
refreshes it on its schedule through :func:`refresh_accounts_index`; a message from an unknown phone
triggers at most one full refresh across all workers (single flight):

* the refresh runs under one Redis lock, so concurrent misses queue behind one fetch;
* whoever gets the lock after waiting first checks "did a refresh START after I asked?" and, if so,
  just reads the fresh index instead of fetching again;
* a refresh younger than ``min_interval`` is also reused, so a subscriber with no account (a miss
  that no refresh can fix) costs one refresh per interval, never one per message.

A refresh is written to a temporary key and RENAMEd over the live one: readers never see a half
built index, and accounts deleted upstream disappear.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import redis
from loguru import logger

from schemas.flows import AccountRef
from schemas.phone import InvalidPhoneError, normalize_phone
from schemas.rosdomofon import Account
from tasks.state import keys
from tasks.state.effects import locked

INDEX_KEY = keys.ACCOUNTS_BY_PHONE
REFRESHED_AT_KEY = keys.ACCOUNTS_REFRESHED_AT
REFRESH_LOCK = "accounts-index-refresh"


def server_time(client: redis.Redis) -> float:
    """Redis' clock, so workers on hosts with skewed clocks agree on "refreshed since I asked"."""
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def account_ref(account: Account) -> AccountRef | None:
    """The index entry for one account, or None when its owner has no usable phone."""
    try:
        phone = normalize_phone(account.owner.phone) if account.owner.phone else None
    except InvalidPhoneError:
        phone = None
    if phone is None:
        return None
    return AccountRef(
        account_id=account.id,
        abonent_id=account.owner.id,
        phone=phone,
        number=account.number,
        blocked=account.blocked,
        company_short_name=account.company.short_name if account.company else None,
    )


def _preferred(current: AccountRef | None, candidate: AccountRef) -> AccountRef:
    """Several accounts may share an owner phone: prefer an active one, then the oldest (lowest id)."""
    if current is None:
        return candidate
    return min(current, candidate, key=lambda ref: (ref.blocked, ref.account_id))


def refresh_accounts_index(
    accounts: Iterable[Account], client: redis.Redis | None = None, *, started_at: float | None = None
) -> int:
    """Replace the whole index with ``accounts``; returns the number of phones indexed.

    ``client`` defaults to this process's Redis client (``tasks.runtime.resources.redis_client()``).

    ``started_at`` is when the account list was fetched (Redis time); waiters compare it with the
    time they asked, so pass the time taken BEFORE fetching. Defaults to now.
    """
    if client is None:
        from tasks.runtime.resources import redis_client

        client = redis_client()
    by_phone: dict[str, AccountRef] = {}
    skipped = 0
    for account in accounts:
        ref = account_ref(account)
        if ref is None:
            skipped += 1
            continue
        by_phone[ref.phone] = _preferred(by_phone.get(ref.phone), ref)
    stamp = server_time(client) if started_at is None else started_at
    temp_key = f"{INDEX_KEY}:building:{stamp}"
    pipe = client.pipeline(transaction=True)
    if by_phone:
        pipe.hset(temp_key, mapping={phone: ref.model_dump_json() for phone, ref in by_phone.items()})
        pipe.rename(temp_key, INDEX_KEY)
    else:
        pipe.delete(INDEX_KEY)
    pipe.set(REFRESHED_AT_KEY, repr(stamp))
    pipe.execute()
    logger.info(
        "accounts index refreshed: {} phones, {} accounts without an owner phone", len(by_phone), skipped
    )
    return len(by_phone)


def get_indexed_account(client: redis.Redis, phone: str) -> AccountRef | None:
    raw = client.hget(INDEX_KEY, normalize_phone(phone))
    return AccountRef.model_validate_json(raw) if raw is not None else None


def last_refresh(client: redis.Redis) -> float | None:
    raw = client.get(REFRESHED_AT_KEY)
    return float(raw) if raw is not None else None


def find_account(
    client: redis.Redis,
    phone: str,
    fetch_accounts: Callable[[], Iterable[Account]],
    *,
    min_interval: float = 60.0,
    lock_wait: float = 120.0,
) -> AccountRef | None:
    """The account whose owner has ``phone``; refreshes the index once (single flight) on a miss."""
    phone = normalize_phone(phone)
    asked_at = server_time(client)
    found = get_indexed_account(client, phone)
    if found is not None:
        return found
    with locked(client, REFRESH_LOCK, wait=lock_wait):
        found = get_indexed_account(client, phone)
        if found is not None:  # the refresh we queued behind found it
            return found
        refreshed = last_refresh(client)
        if refreshed is not None and refreshed >= asked_at:
            logger.debug("accounts index: reusing a refresh that started after the miss")
        elif refreshed is not None and asked_at - refreshed < min_interval:
            logger.debug(
                "accounts index: last refresh {:.0f}s ago, not refreshing again", asked_at - refreshed
            )
        else:
            started_at = server_time(client)
            refresh_accounts_index(_materialise(fetch_accounts()), client, started_at=started_at)
    return get_indexed_account(client, phone)


def _materialise(accounts: Iterable[Any]) -> list[Account]:
    return [a if isinstance(a, Account) else Account.model_validate(a) for a in accounts]


__all__ = [
    "INDEX_KEY",
    "account_ref",
    "find_account",
    "get_indexed_account",
    "last_refresh",
    "refresh_accounts_index",
]
