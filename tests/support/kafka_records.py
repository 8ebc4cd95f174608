"""Subscriber messages on MESSAGES_IN in the real RosDomofon shape: as a parsed record for the flow
tests, as bytes produced to the broker for the ingest tests and benchmark."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Producer

from sandbox.rosdomofon.kafka_side import incoming_payload
from sandbox.rosdomofon.state import Abonent
from schemas.kafka import KafkaIncomingMessage


def incoming(
    abonent_id: int, phone: int, text: str, company_id: int | None = None, image_url: str | None = None
) -> KafkaIncomingMessage:
    """A MESSAGES_IN record shaped like the real sample: text in localizedPush.message (``image_url``:
    the optional ``imageUrl`` of a picture)."""
    return KafkaIncomingMessage.model_validate(
        {
            **({"imageUrl": image_url} if image_url else {}),
            "fromAbonent": {
                "id": abonent_id,
                "phone": phone,
                "companyId": company_id,
                "restrictionPushTokenIds": [],
            },
            "channel": "support",
            "message": None,
            "deliveryMethod": None,
            "toAbonents": None,
            "broadcast": False,
            "waitResponse": True,
            "localizedPush": {"message": text, "messageKey": None, "messageArgs": None},
        }
    )


def subscriber_payload(abonent_id: int, phone: int, company_id: int, text: str) -> bytes:
    """A MESSAGES_IN value exactly as the RosDomofon simulator's subscriber app produces it."""

    abonent = Abonent(id=abonent_id, phone=phone, uid="", company_id=company_id)
    return json.dumps(incoming_payload(abonent, text), ensure_ascii=False).encode("utf-8")


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[bytes],
    *,
    partitions: int | None = None,
    on_sent: Callable[[int, float], None] | None = None,
) -> list[tuple[int, int]]:
    """Produce and confirm every value (round-robin over ``partitions`` when given); (partition, offset)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    results: list[tuple[int, int] | None] = []
    errors: list[str] = []

    def report(index: int) -> Callable[[Any, Any], None]:
        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                results[index] = (msg.partition(), msg.offset())

        return on_delivery

    for index, value in enumerate(values):
        results.append(None)
        kwargs: dict[str, Any] = {"on_delivery": report(index)}
        if partitions:
            kwargs["partition"] = index % partitions
        if on_sent is not None:
            on_sent(index, time.time())
        producer.produce(topic, value, **kwargs)
        producer.poll(0)
    remaining = producer.flush(30)
    if remaining or errors or any(r is None for r in results):
        raise RuntimeError(f"produce to {topic} failed: {remaining} unsent, errors {errors[:3]}")
    return [r for r in results if r is not None]


__all__ = ["incoming", "produce", "subscriber_payload"]
