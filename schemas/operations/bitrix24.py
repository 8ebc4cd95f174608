"""Payloads and results of the ``bitrix24.*`` tasks (contacts, timeline, CRM chat, Open Lines)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from schemas.bitrix24 import ConnectorMessage, Contact, DeliveryStatus, SendMessagesResult
from schemas.operations import OperationPayload
from schemas.phone import PhoneStr


class FindContactsByPhonePayload(OperationPayload):
    phones: list[PhoneStr] = Field(min_length=1, max_length=1000)


class ContactIdPayload(OperationPayload):
    contact_id: int = Field(gt=0)


class CreateContactPayload(OperationPayload):
    fields: dict[str, Any] = Field(
        description="crm.contact.add fields, e.g. NAME, PHONE: [{VALUE, VALUE_TYPE}]"
    )


class UpdateContactPayload(OperationPayload):
    contact_id: int = Field(gt=0)
    fields: dict[str, Any] = Field(min_length=1)


class TimelineCommentPayload(OperationPayload):
    contact_id: int = Field(gt=0)
    text: str = Field(min_length=1)


class ChatMessagePayload(OperationPayload):
    chat_id: int = Field(gt=0)
    text: str = Field(min_length=1)


class CreateCrmChatPayload(OperationPayload):
    contact_id: int = Field(gt=0)
    title: str = Field(min_length=1)
    users: list[int] | None = None


class ConnectorLinePayload(OperationPayload):
    """Connector and line default to ``OPENLINES_CONNECTOR_ID`` / ``OPENLINES_LINE_ID``."""

    connector: str | None = None
    line: str | int | None = None


class SendOpenLinesMessagesPayload(ConnectorLinePayload):
    messages: list[ConnectorMessage] = Field(min_length=1)


class DeliveryStatusPayload(ConnectorLinePayload):
    statuses: list[DeliveryStatus] = Field(min_length=1)


class ActivateConnectorPayload(ConnectorLinePayload):
    active: bool = True


class RegisterConnectorPayload(OperationPayload):
    connector: str | None = None
    name: str = Field(min_length=1)
    placement_handler: str = Field(min_length=1, description="public URL of our settings page handler")
    chat_group: bool = False


class BindEventPayload(OperationPayload):
    event: str = Field(min_length=1)
    handler: str = Field(min_length=1, description="public URL Bitrix24 POSTs the event to")


class ContactsByPhoneResult(BaseModel):
    contacts: dict[str, list[int]]  # canonical phone -> contact ids ([] when none)


class ContactResult(BaseModel):
    contact: Contact


class ContactIdResult(BaseModel):
    contact_id: int
    existed: bool = False  # found by phone after an ambiguous create, not created by this call


class IdResult(BaseModel):
    id: int


class OpenLinesSendResult(BaseModel):
    result: SendMessagesResult
