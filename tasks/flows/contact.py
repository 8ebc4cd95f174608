"""``bitrix24.find_or_create_contact``: one Bitrix24 contact per subscriber phone, never two.

Bitrix24 has no uniqueness constraint and no idempotency key for contacts, so:

1. a Redis cache ``phone -> contact id`` answers repeat subscribers without an API call;
2. under the per-phone lock, ``crm.duplicate.findbycomm`` finds contacts made by anyone (operators,
   reconciliation, another worker that held the lock before us), and only then we create. The
   portal compares digits only, so the phone is asked in its three spellings (``7…``, ``8…``, ten
   digits, :func:`phone_spellings`): a contact an operator typed as ``8 (913) 123-45-67`` is found;
3. if the lock is busy (someone is creating it, or died doing so), the portal is asked at once;
4. a create that failed ambiguously (timeout, 5xx: it may have committed) is looked up once more at
   once and, if still absent, re-raised as ``LookUpFirstError``; the retry starts again at step 1,
   so it looks the phone up before creating again;
5. the lock is a fenced lease: the create runs only after ``lease.ensure_held()``, and right after
   it the phone is looked up again on the portal. A create that was on the wire while we were
   stopped past the lease may have committed after a successor's: if an older contact carries the
   phone, ours is the newer duplicate and we delete it and use the older one.

Contacts carry the RosDomofon ids as reconciliation writes them (``ORIGINATOR_ID="rosdomofon"``,
``ORIGIN_ID=<account id>``, the same name), so reconciliation later adopts rather than duplicates
them. A subscriber without an account still gets a contact, marked in its comment.

Reconciliation creates contacts through the same gate (:class:`PhoneGate`): it holds the same
per-phone locks around its create batch, skips (for a later round) the phones a message is being
handled for right now, re-checks the phones this module has cached a contact for, and caches what
it created. So an owner who writes during a reconcile run still gets one contact: whoever takes the
phone's lock second finds the first one's contact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import redis
from loguru import logger

from clients.errors import LookUpFirstError
from schemas.flows import AccountRef, FindOrCreateContactPayload, FindOrCreateContactResult
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

    def call(self, method: str, params: Any = None) -> Any: ...

    def create_contact(self, fields: Any) -> int: ...


def cache_key(phone: str) -> str:
    return f"{CACHE_PREFIX}:{phone}"


def phone_spellings(phone: str) -> list[str]:
    """How a canonical ``7XXXXXXXXXX`` may be stored, as the portal's digits-only index sees it."""
    return [phone, "8" + phone[1:], phone[1:]]


def find_on_portal(directory: ContactDirectory, phone: str) -> list[int]:
    """Ids of the contacts holding ``phone`` in any spelling (one ``crm.duplicate.findbycomm``)."""
    params = {"type": "PHONE", "entity_type": "CONTACT", "values": phone_spellings(phone)}
    result = directory.call("crm.duplicate.findbycomm", params)
    ids = result.get("CONTACT") if isinstance(result, dict) else None  # [] when nothing matched
    return sorted({int(i) for i in ids or []})


def remember(cache: redis.Redis, phone: str, contact_id: int) -> None:
    """The phone's contact, for the next message of the subscriber (and for :class:`PhoneGate`)."""
    cache.set(cache_key(phone), contact_id, ex=CACHE_TTL)


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
    ids = find_on_portal(directory, phone)
    if not ids:
        return None
    contact_id = min(ids)  # the oldest is the one operators have been using
    remember(cache, phone, contact_id)
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
    with effects.phone_lock(cache, phone, wait=LOCK_WAIT) as lease:
        found = _lookup(directory, cache, phone)
        if found is not None:
            return found, False
        lease.ensure_held()  # stopped past the lease: a successor may have created it already
        try:
            contact_id = directory.create_contact(fields)
        except LookUpFirstError:
            found = _lookup(directory, cache, phone)
            if found is not None:
                logger.info("contact {} committed despite an ambiguous answer", found)
                return found, True
            raise
        kept = _keep_oldest(directory, phone, contact_id)
        remember(cache, phone, kept)
        if kept != contact_id:
            return kept, False
        logger.info("bitrix24 contact {} created for a subscriber", contact_id)
        return contact_id, True


class PhoneGate:
    """The contact-creation gate for a batch writer (reconciliation): the flow's locks and cache.

    ``with gate.claim(phones) as claimed`` holds the per-phone lock of each phone that is free right
    now (``claimed``); a phone whose lock is busy is being handled by a message and must be tried
    again later. Under the locks, :meth:`known` says which claimed phones already have a contact
    this module found or made (re-check those, never create them), and :meth:`remember` records
    the batch's creates so the flow finds them without asking the portal.
    """

    def __init__(self, cache: redis.Redis) -> None:
        self.cache = cache

    @contextmanager
    def claim(self, phones: Iterable[str]) -> Iterator[set[str]]:
        names = {effects.phone_lock_name(p): p for p in phones}
        with effects.locked_free(self.cache, names) as held:
            yield {names[name] for name in held}

    def known(self, phones: Iterable[str]) -> set[str]:
        phones = list(phones)
        if not phones:
            return set()
        found = self.cache.mget([cache_key(p) for p in phones])
        return {p for p, raw in zip(phones, found, strict=True) if raw is not None}

    def remember(self, phone: str, contact_id: int) -> None:
        remember(self.cache, phone, contact_id)


def _keep_oldest(directory: ContactDirectory, phone: str, created: int) -> int:
    """After our create: the phone's oldest contact, deleting ours if an older one exists.

    A lease check before the create cannot stop a request already sent when the holder was stopped:
    the portal may commit it after the successor's own create. Only the newer one of two is removed,
    and only by its creator, so two creators never delete each other's contacts.
    """
    ids = find_on_portal(directory, phone)  # every spelling, as the flow looks it up
    older = [i for i in ids if i < created]
    if not older:
        return created
    oldest = min(older)
    logger.warning(
        "contact {} duplicates the older contact {} of the same phone (created beside a successor "
        "while we were stopped); deleting ours",
        created, oldest,
    )  # fmt: skip
    directory.call("crm.contact.delete", {"id": created})
    metrics.CONTACTS.inc(outcome="duplicate_removed")
    return oldest


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
    fingerprint = payload.message.content_fingerprint() if payload.message else None
    with logger.contextualize(message_id=message_id):
        if message_id is not None:
            marker = effects.recall(cache, message_id, STEP, fingerprint)
            if marker is not None and marker.done and marker.result is not None:
                # The marker keeps ids only; the message (and its text) rides in the payload.
                return FindOrCreateContactResult.model_validate({**marker.result, "message": payload.message})
        abonent_id = payload.abonent_id or (payload.account.abonent_id if payload.account else None)
        fields = contact_fields(payload.phone, payload.account, abonent_id)
        contact_id, created = ensure_contact(bitrix24_client(), cache, payload.phone, fields)
        result = FindOrCreateContactResult(
            **payload.model_dump(exclude_none=False), contact_id=contact_id, created=created
        )
        if message_id is not None:
            effects.mark_done(
                cache,
                message_id,
                STEP,
                result.model_dump(mode="json", exclude={"message"}),
                ttl=get_settings().effect_marker_ttl,
                fingerprint=fingerprint,
            )
        metrics.CONTACTS.inc(outcome="created" if created else "found")
        logger.info("contact {} {} for the subscriber", contact_id, "created" if created else "found")
        return result


__all__ = [
    "PhoneGate",
    "contact_fields",
    "ensure_contact",
    "find_on_portal",
    "find_or_create_contact",
    "phone_spellings",
    "remember",
]
