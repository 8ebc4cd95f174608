"""What makes two Kafka records the same subscriber message: the identity rule.

A Kafka position (``topic:partition:offset``) is not an identity: offsets start at 0 again when a
topic is recreated, the embedded broker restarts empty, a consumer group moves to a mirror cluster,
or an unclean leader election truncates a log. Effect markers keyed by position then take every new
message for the old one that had its offset, and the new one is silently never posted.

The rule, with the position kept only as provenance (logs, dead letters,
``SubscriberMessage.kafka_position``):

* **id = ``<topic>:<record timestamp ms>:<first 16 hex of sha256(value)>``.** A producer's retry
  duplicate carries the same value and the same (producer-set, ``CreateTime``) timestamp at a new
  offset: same id, posted once. A subscriber who writes "да" twice makes two records with different
  timestamps: two ids, two posts. A reused offset holds another record (another timestamp or value):
  another id.
* **fingerprint = the full sha256 hex of the value**, stored in every effect marker; a marker found
  under the same id with another fingerprint is a different message (logged, counted in
  ``rdb24_message_id_conflicts_total``), never "already done".
* **A record without a timestamp** (``TIMESTAMP_NOT_AVAILABLE``, or 0/negative) falls back to
  ``<topic>:<partition>:<offset>:<16 hex>``: a reused offset with a different value is still told
  apart, and a redelivery of the same record keeps its id. What is lost: a producer retry duplicate
  becomes two posts (a duplicate, never a loss), and the same text at the same reused offset is
  taken for the old message (only after an offset reset AND identical bytes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

HASH_PREFIX = 16  # hex characters of the value hash in the id: 64 bits, collisions need ~4e9 per ms


@dataclass(frozen=True)
class RecordIdentity:
    message_id: str  # the idempotency key of every task id, marker, lock and ledger entry
    fingerprint: str  # sha256 hex of the record value
    position: str  # topic:partition:offset, provenance only


def fingerprint(value: bytes | None) -> str:
    return hashlib.sha256(value or b"").hexdigest()


def identify(
    topic: str, partition: int, offset: int, timestamp_ms: int | None, value: bytes | None
) -> RecordIdentity:
    """The identity of one record (see the module docstring for the rule and its fallback)."""
    digest = fingerprint(value)
    position = f"{topic}:{partition}:{offset}"
    if timestamp_ms is not None and timestamp_ms > 0:
        message_id = f"{topic}:{timestamp_ms}:{digest[:HASH_PREFIX]}"
    else:
        message_id = f"{position}:{digest[:HASH_PREFIX]}"
    return RecordIdentity(message_id=message_id, fingerprint=digest, position=position)


__all__ = ["HASH_PREFIX", "RecordIdentity", "fingerprint", "identify"]
