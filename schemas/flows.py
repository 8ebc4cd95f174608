"""Payloads and results of the message flow steps and the operator reply.

The incoming-message chain passes each step's JSON result to the next step as its payload, so every
result here is exactly the next step's payload model: ``LookupAccountResult`` is a
``FindOrCreateContactPayload``, ``FindOrCreateContactResult`` is a ``PostToChatPayload``. The
subscriber's message rides along in ``message`` so the last step can post its text, and its
``message_id`` (topic, record timestamp and value hash, see :mod:`tasks.ingest.identity`) keys every
effect marker of the chain; ``fingerprint`` is stored in each marker to tell a reused id apart.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.phone import PhoneStr


class FlowModel(BaseModel):
    """Strict task payload: an unknown field is an error naming it, never silently dropped."""

    model_config = ConfigDict(extra="forbid")


def _seconds(sent_at: float | None) -> str:
    """``sent_at`` as the fingerprint has always spelled it: whole seconds without a decimal point."""
    if sent_at is None or not float(sent_at).is_integer():
        return str(sent_at)
    return str(int(sent_at))


class SubscriberMessage(FlowModel):
    """One subscriber message from ``MESSAGES_IN_<company>``, reduced to what the flow needs."""

    message_id: str = Field(
        min_length=1, description="topic:timestamp-ms:value-hash (tasks.ingest.identity); the idempotency key"
    )
    abonent_id: int = Field(gt=0, description="RosDomofon abonent (subscriber) id of the sender")
    phone: PhoneStr
    company_id: int | None = None
    text: str = Field(default="", description="The message text (localizedPush.message on the wire)")
    image_url: str | None = Field(default=None, description="A picture the subscriber sent (imageUrl)")
    sent_at: float | None = Field(
        default=None,
        description="Kafka record timestamp, unix seconds (to the ms); orders the subscriber's messages",
    )
    fingerprint: str | None = Field(
        default=None, description="sha256 hex of the Kafka record value; None: derived from the content"
    )
    kafka_position: str | None = Field(
        default=None, description="Kafka topic:partition:offset it was read at (provenance, not identity)"
    )

    def content_fingerprint(self) -> str:
        """The record's fingerprint, or for a message that came without one (CLI, other services) a
        hash of what the chain posts, so a marker left by other content under this id is still told apart."""
        if self.fingerprint:
            return self.fingerprint
        content = f"{self.abonent_id}\x1f{self.phone}\x1f{_seconds(self.sent_at)}\x1f{self.text}"
        return hashlib.sha256(content.encode()).hexdigest()


class HandleIncomingMessageResult(FlowModel):
    """The chain was accepted by the broker; ``task_ids`` are its steps' deterministic ids, in order."""

    message_id: str
    task_ids: list[str]


class AccountRef(FlowModel):
    """What the phone -> account index keeps per phone: enough to label a contact and a chat."""

    account_id: int
    abonent_id: int = Field(description="The account owner's abonent id")
    phone: PhoneStr
    number: str | None = Field(default=None, description="Billing account number (лицевой счёт)")
    blocked: bool = False
    company_short_name: str | None = None


class LookupAccountPayload(FlowModel):
    phone: PhoneStr
    abonent_id: int | None = None
    message: SubscriberMessage | None = None


class LookupAccountResult(FlowModel):
    """``account`` is None when RosDomofon has no account with this owner phone."""

    phone: PhoneStr
    abonent_id: int | None = None
    account: AccountRef | None = None
    message: SubscriberMessage | None = None


class FindOrCreateContactPayload(LookupAccountResult):
    """Find the subscriber's Bitrix24 contact by phone, or create it (labelled with the account)."""


class FindOrCreateContactResult(FindOrCreateContactPayload):
    contact_id: int
    created: bool = False


class ChatModeUsed(StrEnum):
    OPENLINES = "openlines"
    CRM_CHAT = "crm_chat"


class PostToChatPayload(FindOrCreateContactResult):
    """The chain's last step needs the message; standalone callers must pass one too."""

    message: SubscriberMessage


class PostToChatResult(FlowModel):
    message_id: str
    contact_id: int
    mode: ChatModeUsed
    chat_id: int | None = Field(default=None, description="Bitrix24 internal chat id (Open Lines session)")
    dialog_id: str | None = Field(default=None, description="Open Lines external chat id or chat<ID>")
    posted_message_id: int | str | None = None
    parts: list[int | str | None] = Field(
        default_factory=list, description="posted ids of each part of a text too long for one message"
    )
    held: bool = Field(
        default=False, description="Not posted: the Bitrix24 app is uninstalled; a reinstall posts it"
    )


class ReplyFile(FlowModel):
    """A file an operator attached to an Open Lines reply (``files[]`` of the event, facts doc §11)."""

    name: str = Field(default="", description="File name as the operator uploaded it")
    link: str = Field(min_length=1, description="Signed short portal URL that opens without OAuth")
    size: int | None = Field(default=None, ge=0, description="Bytes")


class OperatorReplyPayload(FlowModel):
    """One operator message from ``ONIMCONNECTORMESSAGEADD``, to deliver to the subscriber."""

    connector: str
    line: str
    chat_id: str = Field(min_length=1, description="Our external chat id, e.g. abonent-<id>")
    im_chat_id: int
    im_message_id: int
    text: str = Field(description="Operator text as Bitrix24 sent it (BB codes)")
    files: list[ReplyFile] = Field(default_factory=list, description="Files the operator attached")
    operator_user_id: int | None = None


class ReplyTransportUsed(StrEnum):
    REST = "rest"
    KAFKA = "kafka"


class OperatorReplyResult(FlowModel):
    abonent_id: int
    phone: PhoneStr | None = None
    transport: ReplyTransportUsed
    text: str = Field(description="The plain text the subscriber received (all parts, joined)")
    rosdomofon_message_id: int | str | None = None
    parts: list[int | str | None] = Field(
        default_factory=list,
        description="RosDomofon message ids of each part of a reply over REPLY_MAX_LENGTH",
    )
    delivery_reported: bool = False


class ResendStalledPayload(FlowModel):
    """``flows.resend_stalled_messages``; by default the thresholds come from the settings."""

    older_than: float | None = Field(
        default=None, ge=0, description="seconds in flight before a resend; default STALLED_MESSAGE_AFTER"
    )
    limit: int = Field(default=500, gt=0, le=10_000, description="messages handled per run")


class ResendStalledResult(FlowModel):
    resent: list[str] = Field(default_factory=list, description="message ids whose chain was enqueued again")
    settled: list[str] = Field(
        default_factory=list, description="message ids already posted, struck out of the ledger"
    )
    unreadable: list[str] = Field(
        default_factory=list,
        description="entries of an unknown kind or an unreadable payload, moved aside and dead-lettered",
    )
    in_flight: int = Field(description="messages still in the ledger after this run")


class PollOfflineEventsPayload(FlowModel):
    """``flows.poll_offline_events``: one pass over the portal's offline event queue."""

    limit: int = Field(
        default=50, gt=0, le=50, description="records taken per call (the portal's default is 50)"
    )
    max_calls: int = Field(default=10, gt=0, le=100, description="event.offline.get calls at most per run")


class PollOfflineEventsResult(FlowModel):
    enabled: bool = Field(description="whether OFFLINE_EVENTS_ENABLED is on (off: nothing was asked)")
    records: int = Field(default=0, description="offline records read")
    enqueued: list[str] = Field(default_factory=list, description="reply task ids published by this run")
    duplicates: list[str] = Field(
        default_factory=list, description="replies the receiver had already enqueued"
    )


__all__ = [
    "AccountRef",
    "ChatModeUsed",
    "FindOrCreateContactPayload",
    "FindOrCreateContactResult",
    "FlowModel",
    "HandleIncomingMessageResult",
    "LookupAccountPayload",
    "LookupAccountResult",
    "OperatorReplyPayload",
    "OperatorReplyResult",
    "PollOfflineEventsPayload",
    "PollOfflineEventsResult",
    "PostToChatPayload",
    "PostToChatResult",
    "ReplyFile",
    "ReplyTransportUsed",
    "ResendStalledPayload",
    "ResendStalledResult",
    "SubscriberMessage",
]
