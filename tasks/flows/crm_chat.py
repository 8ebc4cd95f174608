"""The webhook-only chat: one CRM-linked internal chat per contact (``im.chat.add`` + ``im.message.add``).

Portals without an OAuth app cannot use Open Lines; there operators read subscriber messages in a
chat attached to the contact's card. The chat id per contact is kept in Redis and the chat is
created under a per-contact lock, so two messages at once never create two chats.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis
from loguru import logger

from clients.errors import IntegrationError, LookUpFirstError
from tasks.state import effects, keys

CHAT_PREFIX = keys.CRM_CHAT_PREFIX
CHAT_TTL = 365 * 24 * 3600


class CrmChatPortal(Protocol):
    """The part of ``Bitrix24Client`` this module uses."""

    def create_crm_chat(self, contact_id: int, title: str) -> int: ...

    def post_chat_message(
        self, chat_id: int, text: str, attach: list[dict[str, Any]] | None = None
    ) -> int: ...

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...


def chat_key(contact_id: int) -> str:
    return f"{CHAT_PREFIX}:{int(contact_id)}"


def known_chat(cache: redis.Redis, contact_id: int) -> int | None:
    raw = cache.get(chat_key(contact_id))
    return int(raw) if raw is not None else None


def find_chat(portal: CrmChatPortal, contact_id: int) -> int | None:
    """The contact's chat as the portal knows it (``im.chat.get`` by entity), or None."""
    try:
        result = portal.call("im.chat.get", {"ENTITY_TYPE": "CRM", "ENTITY_ID": f"CONTACT|{int(contact_id)}"})
    except IntegrationError as exc:
        logger.warning("cannot look the chat of contact {} up ({})", contact_id, exc)
        return None
    found = result.get("ID") if isinstance(result, dict) else None
    return int(found) if found else None


def ensure_chat(
    portal: CrmChatPortal,
    cache: redis.Redis,
    contact_id: int,
    title: str,
    *,
    lease: effects.Lease | None = None,
) -> int:
    """The contact's chat id, creating the chat once.

    The create runs only while both our chat lease and the caller's ``lease`` (the post lock) hold.

    As with contacts, a busy lock (someone creating it, or dead mid-create) or an ambiguous create
    sends us to the portal first, so a chat that was committed is found rather than made twice.
    """
    found = known_chat(cache, contact_id)
    if found is not None:
        return found
    name = f"crm-chat:{contact_id}"
    if effects.is_locked(cache, name):
        found = find_chat(portal, contact_id)
        if found is not None:
            cache.set(chat_key(contact_id), found, ex=CHAT_TTL)
            return found
    with effects.locked(cache, name, wait=30) as chat_lease:
        found = known_chat(cache, contact_id)
        if found is not None:
            return found
        for held in (chat_lease, lease):
            if held is not None:
                held.ensure_held()
        try:
            chat_id = portal.create_crm_chat(contact_id, title)
        except LookUpFirstError:
            found = find_chat(portal, contact_id)
            if found is None:
                raise
            chat_id = found
        cache.set(chat_key(contact_id), chat_id, ex=CHAT_TTL)
        logger.info("crm chat {} ready for contact {}", chat_id, contact_id)
        return chat_id


__all__ = ["chat_key", "ensure_chat", "find_chat", "known_chat"]
