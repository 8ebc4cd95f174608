"""The webhook-only chat fallback: one CRM-linked internal chat per contact (``im.chat.add``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any


class ChatMixin:
    if TYPE_CHECKING:

        def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...

    def create_crm_chat(self, contact_id: int, title: str, users: Iterable[int] | None = None) -> int:
        """Create a chat linked to the contact's CRM card and return its id."""
        params: dict[str, Any] = {
            "TYPE": "CHAT",
            "TITLE": title,
            "ENTITY_TYPE": "CRM",
            "ENTITY_ID": f"CONTACT|{int(contact_id)}",
        }
        if users:
            params["USERS"] = [int(u) for u in users]
        return int(self.call("im.chat.add", params))

    def post_chat_message(self, chat_id: int, text: str, attach: list[dict[str, Any]] | None = None) -> int:
        """Post ``text`` (BB codes allowed) to ``chat<chat_id>`` and return the message id.

        ``attach`` is an ``ATTACH`` block list (``[{"LINK": {"NAME", "LINK"}}, …]``), e.g. a picture.
        """
        params: dict[str, Any] = {"DIALOG_ID": f"chat{int(chat_id)}", "MESSAGE": text}
        if attach:
            params["ATTACH"] = attach
        return int(self.call("im.message.add", params))


__all__ = ["ChatMixin"]
