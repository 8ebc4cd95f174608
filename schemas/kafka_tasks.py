"""Payloads and results of the ``rosdomofon.kafka_send_message*`` tasks (replies via MESSAGES_OUT)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.phone import Phone


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaRecipient(_Strict):
    id: int = Field(gt=0, description="RosDomofon abonent id")
    phone: Phone
    company_id: int | None = Field(default=None, alias="companyId")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class KafkaSendMessagePayload(_Strict):
    to_abonent_id: int = Field(gt=0, description="RosDomofon abonent id")
    to_abonent_phone: Phone
    message: str = Field(min_length=1)
    company_id: int | None = None


class KafkaSendToMultiplePayload(_Strict):
    to_abonents: list[KafkaRecipient] = Field(min_length=1)
    message: str = Field(min_length=1)


class KafkaDeliveryResult(_Strict):
    """Where the broker stored the outgoing record."""

    topic: str
    partition: int
    offset: int
    recipients: int


__all__ = ["KafkaDeliveryResult", "KafkaRecipient", "KafkaSendMessagePayload", "KafkaSendToMultiplePayload"]
