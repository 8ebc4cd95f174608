"""Replies to subscribers through Kafka ``MESSAGES_OUT_<company>``, as tasks other services enqueue.

Each task returns once the broker confirmed the record; a broker outage is ``RetryLaterError`` (the
base task retries with backoff), a refused record is ``FixInputError`` (dead letter), an
authorization failure ``DoNotRetryError``.
"""

from __future__ import annotations

from schemas.kafka_tasks import (
    KafkaDeliveryResult,
    KafkaSendMessagePayload,
    KafkaSendToMultiplePayload,
)
from tasks.runtime.kafka_setup import kafka_client
from tasks.runtime.operation import operation
from tasks.runtime.queues import Queue


@operation(
    "rosdomofon.kafka_send_message",
    queue=Queue.ROSDOMOFON,
    payload=KafkaSendMessagePayload,
    result=KafkaDeliveryResult,
)
def kafka_send_message(payload: KafkaSendMessagePayload) -> KafkaDeliveryResult:
    """Send one support message to one subscriber through MESSAGES_OUT."""
    delivered = kafka_client().send_message(
        payload.to_abonent_id, payload.to_abonent_phone, payload.message, payload.company_id
    )
    return KafkaDeliveryResult(
        topic=delivered.topic, partition=delivered.partition, offset=delivered.offset, recipients=1
    )


@operation(
    "rosdomofon.kafka_send_message_to_multiple",
    queue=Queue.ROSDOMOFON,
    payload=KafkaSendToMultiplePayload,
    result=KafkaDeliveryResult,
)
def kafka_send_message_to_multiple(payload: KafkaSendToMultiplePayload) -> KafkaDeliveryResult:
    """Send one support message addressed to several subscribers through MESSAGES_OUT."""
    recipients = [r.model_dump(by_alias=True) for r in payload.to_abonents]
    delivered = kafka_client().send_message_to_multiple(recipients, payload.message)
    return KafkaDeliveryResult(
        topic=delivered.topic,
        partition=delivered.partition,
        offset=delivered.offset,
        recipients=len(recipients),
    )
