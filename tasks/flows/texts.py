"""What operators and subscribers read: the chat text of a subscriber message, and a plain operator reply.

Operators must see who wrote without opening the contact (phone, account number, "no account"), and
subscribers must not see Bitrix24's BB codes (Open Lines prefixes the operator's name in bold).
"""

from __future__ import annotations

import re

from schemas.flows import AccountRef, SubscriberMessage

NO_ACCOUNT = "нет лицевого счёта в РосДомофоне"
# Bitrix24 cuts a chat message at 20,000 characters and appends " (...)" (bitrix24-api.md §11).
MESSAGE_LIMIT = 20_000
# Room left in each part for the sender line, the part counter and the CRM chat's hidden tag.
PART_RESERVE = 600

_LINE_BREAK = re.compile(r"\[br\]", re.IGNORECASE)
_BB_TAG = re.compile(
    r"\[/?(?:b|i|u|s|br|quote|code|color|size|font|left|right|center|justify|url|img|user|chat|"
    r"context|send|put|call|icon|list|\*|p|user=[^\]]*|chat=[^\]]*|url=[^\]]*|color=[^\]]*|size=[^\]]*|"
    r"font=[^\]]*|send=[^\]]*|put=[^\]]*|call=[^\]]*|context=[^\]]*)\]",
    re.IGNORECASE,
)
_SPACES_AROUND_NEWLINE = re.compile(r"[ \t]*\n[ \t]*")


def sender_label(phone: str, account: AccountRef | None) -> str:
    """``+79131234567, л/с 100234`` or ``+79131234567, нет лицевого счёта в РосДомофоне``."""
    if account is None:
        return f"+{phone}, {NO_ACCOUNT}"
    label = f"+{phone}, л/с {account.number or account.account_id}"
    return label + " (заблокирован)" if account.blocked else label


def chat_text(message: SubscriberMessage, account: AccountRef | None, *, with_sender: bool = True) -> str:
    """The text posted to Bitrix24 for one subscriber message.

    Open Lines already shows the subscriber as the dialog's user, yet we keep the sender line there
    too: it is the only place the operator sees the account number and the "no account" mark.
    """
    body = message.text or "(пустое сообщение)"
    if not with_sender:
        return body
    return f"[b]{sender_label(message.phone, account)}[/b][br]{body}"


def _chunks(body: str, size: int) -> list[str]:
    """``body`` in pieces of at most ``size`` characters, cut after a line break or space when one is
    near the end of the window (so words survive), else hard."""
    pieces, rest = [], body
    while len(rest) > size:
        window = rest[:size]
        cut = max(window.rfind("\n"), window.rfind(" "))
        cut = cut + 1 if cut >= size * 9 // 10 else size
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    return pieces


def chat_parts(
    message: SubscriberMessage, account: AccountRef | None, *, limit: int = MESSAGE_LIMIT
) -> list[str]:
    """The chat text in ordered parts Bitrix24 accepts whole; one part for any text that fits.

    A longer text would be cut silently by the portal, so it is split and every part carries the
    sender line with ``(i/n)``, for the operator to read them in order.
    """
    whole = chat_text(message, account)
    if len(whole) <= limit - PART_RESERVE:
        return [whole]
    pieces = _chunks(message.text, limit - PART_RESERVE)
    label = sender_label(message.phone, account)
    return [f"[b]{label} ({i}/{len(pieces)})[/b][br]{piece}" for i, piece in enumerate(pieces, 1)]


def strip_bbcodes(text: str) -> str:
    """Plain text for the subscriber's app: ``[br]`` becomes a newline, other known tags vanish."""
    plain = _LINE_BREAK.sub("\n", text)
    plain = _BB_TAG.sub("", plain)
    plain = _SPACES_AROUND_NEWLINE.sub("\n", plain)
    return plain.strip()


__all__ = ["MESSAGE_LIMIT", "NO_ACCOUNT", "chat_parts", "chat_text", "sender_label", "strip_bbcodes"]
