"""Who is behind a Bitrix24 dialog: the link from a chat back to the RosDomofon subscriber.

Open Lines dialogs are keyed by our external ids, derived from the subscriber (one subscriber = one
dialog): ``user.id = chat.id = "abonent-<abonent id>"``. An operator reply carries only that chat
id, so the abonent id is parsed from it, and the phone, company and contact come from the record
the message flow keeps in Redis (``rdb24:subscriber:<abonent id>``).
"""

from __future__ import annotations

import re

import redis
from pydantic import BaseModel, ConfigDict

from schemas.phone import PhoneStr
from tasks.errors import UnknownDialogError
from tasks.state import keys

DIALOG_PREFIX = "abonent-"
RECORD_PREFIX = keys.SUBSCRIBER_PREFIX
RECORD_TTL = 180 * 24 * 3600  # a subscriber may reply to an operator months later
_DIALOG = re.compile(rf"^{DIALOG_PREFIX}(\d+)$")


class SubscriberRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    abonent_id: int
    phone: PhoneStr
    company_id: int | None = None
    company_short_name: str | None = None
    account_id: int | None = None
    contact_id: int | None = None
    openlines_chat_id: int | None = None
    crm_chat_id: int | None = None


def dialog_id(abonent_id: int) -> str:
    return f"{DIALOG_PREFIX}{int(abonent_id)}"


def abonent_of_dialog(chat_id: str) -> int:
    match = _DIALOG.match(chat_id.strip())
    if match is None:
        raise UnknownDialogError(f"chat id {chat_id!r} is not an abonent-<id> dialog of this connector")
    return int(match.group(1))


def _key(abonent_id: int) -> str:
    return f"{RECORD_PREFIX}:{int(abonent_id)}"


def remember(client: redis.Redis, record: SubscriberRecord) -> SubscriberRecord:
    """Merge ``record`` over what we knew (unset fields keep their earlier values)."""
    known = recall(client, record.abonent_id)
    merged = known.model_copy(update=record.model_dump(exclude_none=True)) if known else record
    client.set(_key(record.abonent_id), merged.model_dump_json(), ex=RECORD_TTL)
    return merged


def recall(client: redis.Redis, abonent_id: int) -> SubscriberRecord | None:
    raw = client.get(_key(abonent_id))
    return SubscriberRecord.model_validate_json(raw) if raw is not None else None


__all__ = [
    "SubscriberRecord",
    "abonent_of_dialog",
    "dialog_id",
    "recall",
    "remember",
]
