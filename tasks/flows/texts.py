"""What operators and subscribers read: the chat text of a subscriber message, and a plain operator reply.

Operators must see who wrote without opening the contact (phone, account number, "no account"), and
subscribers must not see Bitrix24's BB codes (Open Lines prefixes the operator's name in bold).

Subscriber text is inert (:func:`inert`): Bitrix24 renders BB codes in it (only ``[USER=]`` is filtered,
facts doc §11), so ``[URL=…]``, ``[SEND=…]``, ``[CALL=…]`` or a fake bold sender line typed by a
subscriber would be live for the operator. There is no documented escape syntax, so a WORD JOINER
(U+2060, invisible, no line break) goes after every ``[``: the parser no longer sees a tag, the
operator reads exactly the characters typed (none removed or replaced), and the bracket stays the
real one, so copying the text keeps its meaning.
"""

from __future__ import annotations

import re

from schemas.flows import AccountRef, SubscriberMessage
from tasks.flows.attachments import web_url

NO_ACCOUNT = "нет лицевого счёта в РосДомофоне"
# Bitrix24 cuts a chat message at 20,000 characters and appends " (...)" (bitrix24-api.md §11).
MESSAGE_LIMIT = 20_000
# Room left in each part for the sender line, the part counter and the CRM chat's hidden tag.
PART_RESERVE = 600
EMPTY_MESSAGE = "(пустое сообщение)"
PICTURE_ONLY = "(фото)"
UNUSABLE_PICTURE = "Картинка не по http(s)-ссылке:"
# Invisible and not a break opportunity: "[\u2060b]" shows as "[b]" but is no BB tag.
WORD_JOINER = "\u2060"
# The hidden tag that marks our own CRM-chat posts (tasks/flows/chat.py); neutralised in subscriber
# text too, so no typed text can look like it even where the portal shows text without BB codes.
OUR_TAG = "rdb24:"

_OUR_TAG = re.compile("(" + re.escape(OUR_TAG[:-1]) + "):", re.IGNORECASE)
_LINE_BREAK = re.compile(r"\[br\]", re.IGNORECASE)
_BB_TAG = re.compile(
    r"\[/?(?:b|i|u|s|br|quote|code|color|size|font|left|right|center|justify|url|img|user|chat|"
    r"context|send|put|call|icon|list|\*|p|user=[^\]]*|chat=[^\]]*|url=[^\]]*|color=[^\]]*|size=[^\]]*|"
    r"font=[^\]]*|send=[^\]]*|put=[^\]]*|call=[^\]]*|context=[^\]]*)\]",
    re.IGNORECASE,
)
_SPACES_AROUND_NEWLINE = re.compile(r"[ \t]*\n[ \t]*")


def inert(text: str) -> str:
    """Subscriber text that Bitrix24 shows as typed: no BB code renders, our tag cannot be forged."""
    text = text.replace("[", "[" + WORD_JOINER)
    return _OUR_TAG.sub(lambda m: m.group(1) + WORD_JOINER + ":", text)  # the typed case is kept


def sender_label(phone: str, account: AccountRef | None) -> str:
    """``+79131234567, л/с 100234`` or ``+79131234567, нет лицевого счёта в РосДомофоне``."""
    if account is None:
        return f"+{phone}, {NO_ACCOUNT}"
    label = f"+{phone}, л/с {inert(str(account.number or account.account_id))}"
    return label + " (заблокирован)" if account.blocked else label


def chat_text(message: SubscriberMessage, account: AccountRef | None, *, with_sender: bool = True) -> str:
    """The text posted to Bitrix24 for one subscriber message.

    Open Lines already shows the subscriber as the dialog's user, yet we keep the sender line there
    too: it is the only place the operator sees the account number and the "no account" mark.
    The subscriber's words are made inert (:func:`inert`); a picture without words says so.
    """
    body = _body(message)
    if not with_sender:
        return body
    return f"[b]{sender_label(message.phone, account)}[/b][br]{body}"


def _body(message: SubscriberMessage) -> str:
    body = inert(message.text) if message.text else (PICTURE_ONLY if message.image_url else EMPTY_MESSAGE)
    if message.image_url and web_url(message.image_url) is None:
        # Not a link we pass on (javascript:, file:...): shown, inert, never clickable or dropped.
        body += f"[br]{UNUSABLE_PICTURE} {inert(message.image_url)}"
    return body


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
    pieces = _chunks(_body(message), limit - PART_RESERVE)  # inert first: the limit counts what is posted
    label = sender_label(message.phone, account)
    return [f"[b]{label} ({i}/{len(pieces)})[/b][br]{piece}" for i, piece in enumerate(pieces, 1)]


def strip_bbcodes(text: str) -> str:
    """Plain text for the subscriber's app: ``[br]`` becomes a newline, other known tags vanish."""
    plain = _LINE_BREAK.sub("\n", text)
    plain = _BB_TAG.sub("", plain)
    plain = _SPACES_AROUND_NEWLINE.sub("\n", plain)
    return plain.strip()


__all__ = [
    "EMPTY_MESSAGE",
    "MESSAGE_LIMIT",
    "NO_ACCOUNT",
    "OUR_TAG",
    "PICTURE_ONLY",
    "UNUSABLE_PICTURE",
    "WORD_JOINER",
    "chat_parts",
    "chat_text",
    "inert",
    "sender_label",
    "strip_bbcodes",
]
