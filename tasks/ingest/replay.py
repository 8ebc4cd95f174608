"""``rdb24 dlq replay`` for unreadable Kafka records: produce the value back to its source topic.

The ingest worker reads it again as a new record (new timestamp, so a new message id): after a fix of
the consumer it becomes a chain; if it is still unreadable it is dead-lettered again, never lost.
The value is the stored text (records are kept as UTF-8 text; undecodable bytes were replaced).
"""

from __future__ import annotations

from schemas.dead_letters import DeadLetter
from tasks.runtime.headers import REPLAY_HEADER
from tasks.runtime.kafka_setup import kafka_config


def replay_kafka_record(letter: DeadLetter) -> str:
    """Returns ``topic:partition:offset`` of the re-produced record."""
    from clients.kafka import ConfirmedProducer

    topic = str(letter.source.get("topic") or letter.name)
    value = letter.payload if isinstance(letter.payload, str) else ""
    producer = ConfirmedProducer(kafka_config())
    try:
        delivered = producer.send(topic, value.encode("utf-8"), headers=[(REPLAY_HEADER, letter.id)])
    finally:
        producer.close()
    return f"{delivered.topic}:{delivered.partition}:{delivered.offset}"
