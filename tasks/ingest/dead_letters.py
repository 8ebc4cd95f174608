"""Unreadable records go to ``<topic><KAFKA_DLQ_SUFFIX>`` with headers naming where they came from.

The record value is copied byte for byte; headers say the source topic, partition and offset and the
error (like Kafka Connect's ``__connect.errors.*``). Delivery is confirmed before the caller stores
the source offset. If the broker refuses the dead-letter topic for good (no such topic, no right to
write it: likely on RosDomofon's own broker) the record goes to the Redis dead-letter store instead,
so it is still never dropped; a broker outage is raised so the caller retries later.
"""

from __future__ import annotations

import time

import redis
from confluent_kafka import Message
from loguru import logger

from clients.kafka import ConfirmedProducer, Delivered, KafkaAuthError, KafkaRecordError, Topics
from schemas.dead_letters import DeadLetter, DeadLetterKind, DeadLetterReason
from tasks.state.dead_letters import DeadLetterStore

H_TOPIC = "dlq.source.topic"
H_PARTITION = "dlq.source.partition"
H_OFFSET = "dlq.source.offset"
H_ERROR_CLASS = "dlq.error.class"
H_ERROR = "dlq.error.message"
H_FAILED_AT = "dlq.failed.at"


class DeadLetterSink:
    def __init__(self, producer: ConfirmedProducer, *, suffix: str, store: DeadLetterStore | None) -> None:
        self.producer = producer
        self.suffix = suffix
        self.store = store

    def dlq_topic(self, topic: str) -> str:
        return Topics.dead_letters(topic, self.suffix)

    def send(self, msg: Message, error: Exception) -> str:
        """Dead-letter ``msg``; returns where it went. Raises ``RetryLaterError`` on a broker outage."""
        source = Delivered.of(msg)
        topic = self.dlq_topic(source.topic)
        headers = [
            *(msg.headers() or []),
            (H_TOPIC, source.topic),
            (H_PARTITION, str(source.partition)),
            (H_OFFSET, str(source.offset)),
            (H_ERROR_CLASS, type(error).__name__),
            (H_ERROR, str(error)[:1000]),
            (H_FAILED_AT, str(int(time.time() * 1000))),
        ]
        try:
            self.producer.send(topic, msg.value() or b"", headers=headers)
        except (KafkaRecordError, KafkaAuthError) as exc:
            logger.error("dead-letter topic {} refused ({}); keeping the record in Redis", topic, exc)
            self._store(msg, error, topic=None, required=True)
            return "redis"
        logger.warning(
            "dead-lettered {}:{}:{} to {}: {}", msg.topic(), msg.partition(), msg.offset(), topic, error
        )
        self._store(msg, error, topic=topic, required=False)
        return topic

    def _store(self, msg: Message, error: Exception, *, topic: str | None, required: bool) -> None:
        """Also list it in ``rdb24 dlq``; only required when the topic refused it."""
        if self.store is None:
            if required:
                raise RuntimeError("no dead-letter store configured and the dead-letter topic refused")
            return
        value = msg.value() or b""
        letter = DeadLetter(
            kind=DeadLetterKind.KAFKA_RECORD,
            name=Delivered.of(msg).topic,
            payload=value.decode("utf-8", errors="replace"),
            reason=DeadLetterReason.UNREADABLE,
            error=f"{type(error).__name__}: {error}",
            source={
                "topic": msg.topic(),
                "partition": msg.partition(),
                "offset": msg.offset(),
                "dlq_topic": topic,
            },
        )
        try:
            self.store.add(letter)
        except redis.RedisError:
            if required:
                raise
            logger.warning("dead letter of {}:{} not listed in Redis", msg.topic(), msg.offset())
