"""The webhook-only chat: one CRM-linked internal chat per contact (``im.chat.add`` + ``im.message.add``).

Portals without an OAuth app cannot use Open Lines; there operators read subscriber messages in a
chat attached to the contact's card. The chat id per contact is kept in Redis and the chat is
created under a per-contact lock, so two messages at once never create two chats.
"""

from __future__ import annotations

from typing import Protocol

import redis
from loguru import logger

from tasks import effects

CHAT_PREFIX = "rdb24:crmchat:contact"
CHAT_TTL = 365 * 24 * 3600


class CrmChatPortal(Protocol):
    """The part of ``Bitrix24Client`` this module uses."""

    def create_crm_chat(self, contact_id: int, title: str) -> int: ...

    def post_chat_message(self, chat_id: int, text: str) -> int: ...


def chat_key(contact_id: int) -> str:
    return f"{CHAT_PREFIX}:{int(contact_id)}"


def known_chat(cache: redis.Redis, contact_id: int) -> int | None:
    raw = cache.get(chat_key(contact_id))
    return int(raw) if raw is not None else None


def ensure_chat(portal: CrmChatPortal, cache: redis.Redis, contact_id: int, title: str) -> int:
    """The contact's chat id, creating the chat once."""
    found = known_chat(cache, contact_id)
    if found is not None:
        return found
    with effects.locked(cache, f"crm-chat:{contact_id}", timeout=90, wait=30):
        found = known_chat(cache, contact_id)
        if found is not None:
            return found
        chat_id = portal.create_crm_chat(contact_id, title)
        cache.set(chat_key(contact_id), chat_id, ex=CHAT_TTL)
        logger.info("crm chat {} created for contact {}", chat_id, contact_id)
        return chat_id


__all__ = ["chat_key", "ensure_chat", "known_chat"]
