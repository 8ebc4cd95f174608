"""``bitrix24.find_or_create_contact``: one Bitrix24 contact per subscriber phone, never two.

Bitrix24 has no uniqueness constraint and no idempotency key for contacts, so:

1. a Redis cache ``phone -> contact id`` answers repeat subscribers without an API call;
2. under the per-phone lock, ``crm.duplicate.findbycomm`` finds contacts made by anyone (operators,
   reconciliation, another worker that held the lock before us), and only then we create;
3. if the lock is busy (someone is creating it, or died doing so), the portal is asked at once;
4. a create that failed ambiguously (timeout, 5xx: it may have committed) is looked up once more at
   once and, if still absent, re-raised as ``LookUpFirstError``; the retry starts again at step 1,
   so it looks the phone up before creating again.

Contacts carry the RosDomofon ids as reconciliation writes them (``ORIGINATOR_ID="rosdomofon"``,
``ORIGIN_ID=<account id>``, the same name), so reconciliation later adopts rather than duplicates
them. A subscriber without an account still gets a contact, marked in its comment.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis
from loguru import logger

from clients.errors import LookUpFirstError
from schemas.flows import AccountRef, FindOrCreateContactPayload, FindOrCreateContactResult
from tasks.flows import contact_batch
from tasks.flows.texts import NO_ACCOUNT
from tasks.runtime import metrics
from tasks.runtime.operation import operation
from tasks.runtime.queues import Queue
from tasks.runtime.resources import bitrix24_client, redis_client
from tasks.settings import get_settings
from tasks.state import effects, keys

STEP = "contact"
CACHE_PREFIX = keys.CONTACT_BY_PHONE_PREFIX
CACHE_TTL = 30 * 24 * 3600
ORIGINATOR = "rosdomofon"  # the same value reconciliation writes (tasks/reconcile/mapping.py)
LOCK_WAIT = 30.0


class ContactDirectory(Protocol):
    """The part of ``Bitrix24Client`` this module uses."""

    def find_contacts_by_phone(self, phones: Any) -> dict[str, list[int]]: ...

    def create_contact(self, fields: Any) -> int: ...


def cache_key(phone: str) -> str:
    return f"{CACHE_PREFIX}:{phone}"


def contact_fields(phone: str, account: AccountRef | None, abonent_id: int | None) -> dict[str, Any]:
    """``crm.contact.add`` fields for a new subscriber contact."""
    fields: dict[str, Any] = {
        "OPENED": "Y",
        "PHONE": [{"VALUE": phone, "VALUE_TYPE": "MOBILE"}],
        "SOURCE_DESCRIPTION": "RosDomofon: сообщение в чат поддержки",
    }
    if account is not None:
        fields["NAME"] = (
            f"Лицевой счёт {account.number}" if account.number else f"Абонент {account.abonent_id}"
        )
        fields["ORIGINATOR_ID"] = ORIGINATOR
        fields["ORIGIN_ID"] = str(account.account_id)
        fields["COMMENTS"] = (
            f"РосДомофон: лицевой счёт {account.number or '—'} (id {account.account_id}), "
            f"абонент id {account.abonent_id}"
        )
    else:
        fields["NAME"] = f"Абонент {abonent_id}" if abonent_id else f"Абонент +{phone}"
        who = f", абонент id {abonent_id}" if abonent_id else ""
        fields["COMMENTS"] = f"РосДомофон: {NO_ACCOUNT}{who}"
    return fields


def _cached(cache: redis.Redis, phone: str) -> int | None:
    raw = cache.get(cache_key(phone))
    return int(raw) if raw is not None else None


def _lookup(directory: ContactDirectory, cache: redis.Redis, phone: str) -> int | None:
    """Cache first, then the portal (``crm.duplicate.findbycomm``); a portal hit is cached."""
    cached = _cached(cache, phone)
    if cached is not None:
        return cached
    ids = directory.find_contacts_by_phone([phone]).get(phone) or []
    if not ids:
        return None
    contact_id = min(ids)  # the oldest is the one operators have been using
    cache.set(cache_key(phone), contact_id, ex=CACHE_TTL)
    if len(ids) > 1:
        logger.warning("phone has {} contacts in Bitrix24; using the oldest, {}", len(ids), contact_id)
    return contact_id


def ensure_contact(
    directory: ContactDirectory, cache: redis.Redis, phone: str, fields: dict[str, Any]
) -> tuple[int, bool]:
    """The contact id for ``phone`` and whether we created it.

    The portal is asked once per new subscriber (inside the lock), not before it too: requests are the
    scarce resource (2 per second per portal). Only when the lock is held by someone else (creating it
    right now, or dead mid-create) do we ask the portal at once, since the contact may already exist.
    """
    found = _cached(cache, phone)
    if found is not None:
        return found, False
    if effects.is_locked(cache, effects.phone_lock_name(phone)):
        found = _lookup(directory, cache, phone)
        if found is not None:
            return found, False
    with effects.phone_lock(cache, phone, wait=LOCK_WAIT):
        found = _lookup(directory, cache, phone)
        if found is not None:
            return found, False
        try:
            contact_id = directory.create_contact(fields)
        except LookUpFirstError:
            found = _lookup(directory, cache, phone)
            if found is not None:
                logger.info("contact {} committed despite an ambiguous answer", found)
                return found, True
            raise
        cache.set(cache_key(phone), contact_id, ex=CACHE_TTL)
        logger.info("bitrix24 contact {} created for a subscriber", contact_id)
        return contact_id, True


def _ensure(cache: redis.Redis, phone: str, fields: dict[str, Any]) -> tuple[int, bool]:
    """Through a batch shared with other new subscribers (``CONTACT_BATCH_WINDOW`` > 0), else alone."""
    portal, window = bitrix24_client(), get_settings().contact_batch_window
    if window > 0:
        shared = contact_batch.ensure_contact_batched(
            portal, cache, phone, fields, window=window, ttl=CACHE_TTL
        )
        if shared is not None:
            return shared
    return ensure_contact(portal, cache, phone, fields)


@operation(
    "bitrix24.find_or_create_contact",
    queue=Queue.BITRIX24,
    payload=FindOrCreateContactPayload,
    result=FindOrCreateContactResult,
)
def find_or_create_contact(payload: FindOrCreateContactPayload) -> FindOrCreateContactResult:
    """Find the subscriber's contact by phone or create it (labelled with the RosDomofon account)."""
    cache = redis_client()
    message_id = payload.message.message_id if payload.message else None
    with logger.contextualize(message_id=message_id):
        if message_id is not None:
            marker = effects.recall(cache, message_id, STEP)
            if marker is not None and marker.done and marker.result is not None:
                return FindOrCreateContactResult.model_validate(marker.result)
        abonent_id = payload.abonent_id or (payload.account.abonent_id if payload.account else None)
        fields = contact_fields(payload.phone, payload.account, abonent_id)
        contact_id, created = _ensure(cache, payload.phone, fields)
        result = FindOrCreateContactResult(
            **payload.model_dump(exclude_none=False), contact_id=contact_id, created=created
        )
        if message_id is not None:
            effects.mark_done(
                cache, message_id, STEP, result.model_dump(mode="json"), ttl=get_settings().effect_marker_ttl
            )
        metrics.CONTACTS.inc(outcome="created" if created else "found")
        logger.info("contact {} {} for the subscriber", contact_id, "created" if created else "found")
        return result


__all__ = ["contact_fields", "ensure_contact", "find_or_create_contact"]
