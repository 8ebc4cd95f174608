"""RosDomofon Kafka payloads (docs/rosdomofon-api.md §4): MESSAGES_IN/OUT and SIGN_UPS.

Real incoming messages carry the text in ``localizedPush.message`` with ``message`` null, so read
:attr:`KafkaIncomingMessage.text`, never ``.message``. Outgoing messages are serialised with their
null fields present and ``deliveryMethod`` upper-case ``PUSH``, exactly as the upstream client builds
them (:meth:`KafkaOutgoingMessage.to_wire`). Payloads carry no timestamp; use the Kafka record's.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from schemas.common import WireModel
from schemas.phone import Phone
from schemas.rosdomofon import PhoneOrZero


class KafkaAbonentInfo(WireModel):
    """A ``toAbonents`` item: ``{companyId?, id, phone}``."""

    company_id: int | None = Field(default=None, alias="companyId")
    id: int
    phone: PhoneOrZero


class KafkaFromAbonent(WireModel):
    """The sender; ``id 0 / phone 0`` means a system message."""

    id: int
    phone: PhoneOrZero
    company_id: int | None = Field(default=None, alias="companyId")
    restriction_push_token_ids: list[Any] = Field(default_factory=list, alias="restrictionPushTokenIds")

    @classmethod
    def system(cls) -> KafkaFromAbonent:
        return cls(id=0, phone=0)


class KafkaLocalizedPush(WireModel):
    message: str | None = None
    message_key: str | None = Field(default=None, alias="messageKey")
    message_args: Any = Field(default=None, alias="messageArgs")


class KafkaIncomingMessage(WireModel):
    """A record of ``MESSAGES_IN_<company>``: a subscriber wrote to the support chat."""

    from_abonent: KafkaFromAbonent = Field(alias="fromAbonent")
    channel: str | None = None
    message: str | None = None
    delivery_method: str | None = Field(default=None, alias="deliveryMethod")
    to_abonents: list[KafkaAbonentInfo] | None = Field(default=None, alias="toAbonents")
    broadcast: bool = False
    wait_response: bool | None = Field(default=None, alias="waitResponse")
    localized_push: KafkaLocalizedPush | None = Field(default=None, alias="localizedPush")
    sms_message: str | None = Field(default=None, alias="smsMessage")
    message_code: str | None = Field(default=None, alias="messageCode")
    chat_id: int | str | None = Field(default=None, alias="chatId")
    properties: Any = None
    providers: Any = None
    app_names: Any = Field(default=None, alias="appNames")
    localized_sms: Any = Field(default=None, alias="localizedSms")
    image_url: str | None = Field(default=None, alias="imageUrl")

    @property
    def text(self) -> str | None:
        """The message text: ``message`` if set, else ``localizedPush.message`` (where real ones carry it)."""
        if self.message:
            return self.message
        return self.localized_push.message if self.localized_push is not None else None


class KafkaOutgoingMessage(WireModel):
    """A record for ``MESSAGES_OUT_<company>``, shaped exactly as [DC] produces it."""

    channel: str = "support"
    delivery_method: str = Field(default="PUSH", alias="deliveryMethod")
    from_abonent: KafkaFromAbonent | None = Field(
        default_factory=KafkaFromAbonent.system, alias="fromAbonent"
    )
    message: str
    to_abonents: list[KafkaAbonentInfo] = Field(alias="toAbonents", min_length=1)
    localized_push: KafkaLocalizedPush | None = Field(default=None, alias="localizedPush")

    @classmethod
    def to_subscriber(
        cls,
        abonent_id: int,
        phone: Any,
        text: str,
        *,
        company_id: int | None = None,
        channel: str = "support",
    ) -> KafkaOutgoingMessage:
        return cls(
            channel=channel,
            message=text,
            to_abonents=[KafkaAbonentInfo(id=abonent_id, phone=phone, company_id=company_id)],
        )

    def to_wire(self) -> dict:
        """Null fields stay present (``companyId: null``, ``localizedPush: null``) as upstream sends them."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)

    def to_json_bytes(self) -> bytes:
        """The Kafka record value: UTF-8 JSON with non-ASCII characters kept as-is."""
        return json.dumps(self.to_wire(), ensure_ascii=False).encode("utf-8")


# --- sign-ups -----------------------------------------------------------------------------------


class SignUpAbonent(WireModel):
    id: int
    phone: Phone


class SignUpCountry(WireModel):
    short_name: str | None = Field(default=None, alias="shortName")
    name: str | None = None


class SignUpStreet(WireModel):
    id: int | None = None
    name: str | None = None
    code_kladr: str | None = Field(default=None, alias="codeKladr")
    code_fias: str | None = Field(default=None, alias="codeFias")
    universal_code: str | None = Field(default=None, alias="universalCode")


class SignUpHouse(WireModel):
    id: int | None = None
    number: str | None = None
    block: str | None = None
    building: str | None = None
    housing: str | None = None


class SignUpAddress(WireModel):
    """No entrance id; ``flat`` is often missing."""

    country: SignUpCountry | None = None
    city: str | None = None
    street: SignUpStreet | None = None
    house: SignUpHouse | None = None
    flat: int | None = None


class SignUpApplication(WireModel):
    id: int | None = None
    name: str | None = None
    provider: str | None = None
    company_id: int | None = Field(default=None, alias="companyId")


class SignUpEvent(WireModel):
    """A record of ``SIGN_UPS_ALL`` / ``SIGN_UPS_<company>``; ``id`` is what ``update_signup`` takes."""

    id: int
    abonent: SignUpAbonent
    address: SignUpAddress | None = None
    application: SignUpApplication | None = None
    virtual: bool | None = None
    time_zone: str | None = Field(default=None, alias="timeZone")
    offer_signed: bool | None = Field(default=None, alias="offerSigned")
    contract_number: str | None = Field(default=None, alias="contractNumber")
    status: str
    created_at: int | None = Field(default=None, alias="createdAt")
    uid: str | None = None
    services: Any = None


__all__ = [
    "KafkaAbonentInfo",
    "KafkaFromAbonent",
    "KafkaIncomingMessage",
    "KafkaLocalizedPush",
    "KafkaOutgoingMessage",
    "SignUpAbonent",
    "SignUpAddress",
    "SignUpApplication",
    "SignUpCountry",
    "SignUpEvent",
    "SignUpHouse",
    "SignUpStreet",
]
