"""What operators and subscribers read: the chat text of a subscriber message, and a plain operator reply.

Operators must see who wrote without opening the contact (phone, account number, "no account"), and
subscribers must not see Bitrix24's BB codes (Open Lines prefixes the operator's name in bold).
"""

from __future__ import annotations

import re

from schemas.flows import AccountRef, SubscriberMessage

NO_ACCOUNT = "нет лицевого счёта в РосДомофоне"

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


def strip_bbcodes(text: str) -> str:
    """Plain text for the subscriber's app: ``[br]`` becomes a newline, other known tags vanish."""
    plain = _LINE_BREAK.sub("\n", text)
    plain = _BB_TAG.sub("", plain)
    plain = _SPACES_AROUND_NEWLINE.sub("\n", plain)
    return plain.strip()


__all__ = ["NO_ACCOUNT", "chat_text", "sender_label", "strip_bbcodes"]
