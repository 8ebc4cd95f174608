"""A dead letter: something the system could not process, kept with enough to diagnose and replay it.

Generic on purpose: the task layer stores failed tasks (``kind="task"``, ``name`` = task name,
``payload`` = its kwargs); the Kafka ingest stores unreadable records (``kind="kafka_record"``,
``name`` = topic). ``source`` holds where it came from (task id, root id, queue, or
topic/partition/offset). Payloads never hold secrets (tasks take ids and JSON only).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class DeadLetterKind(StrEnum):
    TASK = "task"
    KAFKA_RECORD = "kafka_record"
    INFLIGHT_ENTRY = "inflight_entry"  # a ledger entry the resend sweep could not read (no replayer)


class DeadLetterReason(StrEnum):
    INVALID_PAYLOAD = "invalid_payload"  # the payload failed validation: fix the producer
    NOT_RETRYABLE = "not_retryable"  # the service refused it for good (4xx, not found, access)
    RETRIES_EXHAUSTED = "retries_exhausted"  # transient errors outlasted the retry budget
    UNEXPECTED = "unexpected"  # an error no category covers (a bug): fix, then replay
    UNREADABLE = "unreadable"  # a Kafka record that could not be decoded
    WORKER_CRASHED = "worker_crashed"  # its task killed the worker process MAX_WORKER_CRASHES times


class DeadLetter(BaseModel):
    id: str = ""  # assigned by the store
    kind: str = DeadLetterKind.TASK
    name: str  # task name, or Kafka topic
    payload: Any = None  # task kwargs (JSON), or the record value (text)
    reason: str
    error: str  # "ErrorClass: message"
    traceback: str | None = None
    attempts: int = 1
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: dict[str, Any] = Field(default_factory=dict)  # task_id, root_id, queue / topic, partition, offset
