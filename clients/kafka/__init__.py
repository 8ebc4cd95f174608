"""Kafka for RosDomofon: config, the embeddable client, the shared consumer and confirmed producer.

Public surface: :class:`KafkaConfig`, :class:`Topics`, :class:`RosDomofonKafkaClient`,
:class:`GroupConsumer` (+ :func:`run`), :class:`ConfirmedProducer`, :func:`decode_incoming` and the
error tree of :mod:`clients.kafka.errors`.
"""

from __future__ import annotations

from clients.kafka.client import MessageHandler, RosDomofonKafkaClient
from clients.kafka.config import KafkaConfig
from clients.kafka.consumer import GroupConsumer, RebalanceListener, TopicPart, run
from clients.kafka.errors import (
    KafkaAuthError,
    KafkaClientError,
    KafkaFatalError,
    KafkaRecordError,
    KafkaUnavailableError,
    PoisonRecordError,
    translate,
)
from clients.kafka.producer import ConfirmedProducer, Delivered
from clients.kafka.records import decode_incoming
from clients.kafka.topics import SIGN_UPS_ALL, Topics

__all__ = [
    "SIGN_UPS_ALL",
    "ConfirmedProducer",
    "Delivered",
    "GroupConsumer",
    "KafkaAuthError",
    "KafkaClientError",
    "KafkaConfig",
    "KafkaFatalError",
    "KafkaRecordError",
    "KafkaUnavailableError",
    "MessageHandler",
    "PoisonRecordError",
    "RebalanceListener",
    "RosDomofonKafkaClient",
    "TopicPart",
    "Topics",
    "decode_incoming",
    "run",
    "translate",
]
