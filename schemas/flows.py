"""Payloads and results of the message flow steps and the operator reply.

The incoming-message chain passes each step's JSON result to the next step as its payload, so every
result here is exactly the next step's payload model: ``LookupAccountResult`` is a
``FindOrCreateContactPayload``, ``FindOrCreateContactResult`` is a ``PostToChatPayload``. The
subscriber's message rides along in ``message`` so the last step can post its text, and its
``message_id`` (Kafka ``topic:partition:offset``) keys every effect marker of the chain.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.phone import PhoneStr


class FlowModel(BaseModel):
    """Strict task payload: an unknown field is an error naming it, never silently dropped."""

    model_config = ConfigDict(extra="forbid")


class SubscriberMessage(FlowModel):
    """One subscriber message from ``MESSAGES_IN_<company>``, reduced to what the flow needs."""

    message_id: str = Field(min_length=1, description="Kafka topic:partition:offset; the idempotency key")
    abonent_id: int = Field(gt=0, description="RosDomofon abonent (subscriber) id of the sender")
    phone: PhoneStr
    company_id: int | None = None
    text: str = Field(default="", description="The message text (localizedPush.message on the wire)")
    sent_at: int | None = Field(default=None, description="Kafka record timestamp, unix seconds")


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


class FlushPostsPayload(FlowModel):
    """``bitrix24.flush_posts`` takes nothing: it posts whatever waits in the outbox."""


class FlushPostsResult(FlowModel):
    posted: int = Field(default=0, description="Messages posted by this run")
    failed: int = Field(default=0, description="Elements the portal refused (retried alone later)")
    requests: int = Field(default=0, description="Bitrix24 requests this run made")
    waiting: int = Field(default=0, description="Messages still in the outbox when it ended")


class OperatorReplyPayload(FlowModel):
    """One operator message from ``ONIMCONNECTORMESSAGEADD``, to deliver to the subscriber."""

    connector: str
    line: str
    chat_id: str = Field(min_length=1, description="Our external chat id, e.g. abonent-<id>")
    im_chat_id: int
    im_message_id: int
    text: str = Field(description="Operator text as Bitrix24 sent it (BB codes)")
    operator_user_id: int | None = None


class ReplyTransportUsed(StrEnum):
    REST = "rest"
    KAFKA = "kafka"


class OperatorReplyResult(FlowModel):
    abonent_id: int
    phone: PhoneStr | None = None
    transport: ReplyTransportUsed
    text: str = Field(description="The plain text the subscriber received")
    rosdomofon_message_id: int | str | None = None
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
        description="entries of an unknown kind or an unreadable payload, left in the ledger for a human",
    )
    in_flight: int = Field(description="messages still in the ledger after this run")


__all__ = [
    "AccountRef",
    "ChatModeUsed",
    "FindOrCreateContactPayload",
    "FindOrCreateContactResult",
    "FlowModel",
    "FlushPostsPayload",
    "FlushPostsResult",
    "HandleIncomingMessageResult",
    "LookupAccountPayload",
    "LookupAccountResult",
    "OperatorReplyPayload",
    "OperatorReplyResult",
    "PostToChatPayload",
    "PostToChatResult",
    "ReplyTransportUsed",
    "ResendStalledPayload",
    "ResendStalledResult",
    "SubscriberMessage",
]
