"""The ingest loop: MESSAGES_IN records -> incoming-message chains, at least once, in order per partition.

Per record: decode -> enqueue the chain with the record's identity (:mod:`tasks.ingest.identity`:
topic, record timestamp and value hash; the ``topic:partition:offset`` position rides along as
provenance) -> hold it until its message is settled (posted or dead-lettered) -> store the offset
(:mod:`tasks.ingest.settlement`: Redis having accepted a chain is not enough, it may restart without
it). A record that cannot be read goes to the dead-letter topic first, then its offset is stored in
turn. When enqueueing
fails (Redis down) the record is kept in a per-partition backlog, that partition is paused (the
consumer keeps polling, so it stays in the group), and the backlog is retried with capped exponential
backoff; later records of the partition queue up behind it, so offsets are never stored out of order
and nothing is dropped. A revoked or lost partition's backlog is simply forgotten: its offsets were
not stored, so its next owner reads those records again.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message
from loguru import logger
from pydantic import ValidationError

from clients.errors import FixInputError, RetryLaterError
from clients.kafka import (
    Delivered,
    GroupConsumer,
    KafkaClientError,
    PoisonRecordError,
    TopicPart,
    decode_incoming,
    run,
)
from tasks.ingest.backpressure import Backpressure
from tasks.ingest.dead_letters import DeadLetterSink
from tasks.ingest.identity import RecordIdentity, identify
from tasks.ingest.metrics import IngestMetrics, IngestStatus, lag_from_stats, write_status
from tasks.ingest.settlement import SettledOffsets
from tasks.runtime import metrics as shared_metrics

# (message: KafkaIncomingMessage, message_id: str, *, sent_at: float | None, fingerprint: str, position: str)
Enqueue = Callable[..., str]
STATUS_INTERVAL = 2.0


def _timestamp_ms(msg: Message) -> int | None:
    """The record's timestamp in unix milliseconds (the payload has none), None when it carries none."""
    kind, millis = msg.timestamp()
    return millis if kind != TIMESTAMP_NOT_AVAILABLE and millis > 0 else None


def record_identity(msg: Message) -> RecordIdentity:
    # A consumed record always has its topic, partition and offset (None only on error events).
    topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
    return identify(topic, partition, offset, _timestamp_ms(msg), msg.value())


@dataclass
class Backlog:
    """Records of one partition waiting behind a failed one, with the next retry time."""

    records: deque[Message] = field(default_factory=deque)
    failures: int = 0
    retry_at: float = 0.0


class IngestWorker:
    """Processes records for a :class:`GroupConsumer`; also its rebalance listener."""

    def __init__(
        self,
        *,
        enqueue: Enqueue,
        dead_letters: DeadLetterSink,
        backpressure: Backpressure | None,
        metrics: IngestMetrics,
        status: IngestStatus,
        status_redis: redis.Redis | None = None,
        retry_backoff_max: float = 30.0,
        settled: SettledOffsets | None = None,
        ledger_redis: redis.Redis | None = None,
        settle_check_interval: float = 0.5,
    ) -> None:
        self.enqueue = enqueue
        self.dead_letters = dead_letters
        self.backpressure = backpressure
        self.metrics = metrics
        self.status = status
        self.status_redis = status_redis
        self.retry_backoff_max = retry_backoff_max
        self.backlogs: dict[TopicPart, Backlog] = {}
        # None (tests of the loop alone): offsets are stored as soon as Redis accepted the chain
        self.settled = settled
        self.ledger_redis = ledger_redis
        self.settle_check_interval = settle_check_interval
        self.consumer: GroupConsumer | None = None
        self._next_status = 0.0
        self._next_settle_check = 0.0

    # --- rebalance ----------------------------------------------------------------------------------
    def on_assigned(self, parts: list[TopicPart]) -> None:
        for part in parts:
            self.backlogs.pop(part, None)
        if self.settled is not None:
            self.settled.forget(parts)

    def on_revoked(self, parts: list[TopicPart], *, lost: bool) -> None:
        if self.settled is not None:
            if not lost:  # store what settled meanwhile; the consumer commits right after this
                self.commit_settled()
            held = sum(self.settled.count(p) for p in parts)
            if held:
                logger.info("{} unsettled records of {} left to be read again", held, parts)
            self.settled.forget(parts)
        for part in parts:
            dropped = self.backlogs.pop(part, None)
            if dropped and dropped.records:
                logger.info("{} records of {} left to the partition's next owner", len(dropped.records), part)
            if self.status.lag.pop(f"{part[0]}:{part[1]}", None) is not None:
                self.metrics.lag.remove(part[0], str(part[1]))

    # --- records ------------------------------------------------------------------------------------
    def on_message(self, msg: Message) -> None:
        where = Delivered.of(msg)
        part = (where.topic, where.partition)
        self.metrics.consumed.labels(part[0]).inc()
        self.status.consumed += 1
        backlog = self.backlogs.get(part)
        if backlog is not None:  # a record before it is still waiting: keep the order
            backlog.records.append(msg)
            return
        if not self._process(msg):
            backlog = self.backlogs[part] = Backlog(deque([msg]))
            self._schedule_retry(part, backlog)
            self._sync_pauses()

    def _process(self, msg: Message) -> bool:
        """True once the record's chain (or its dead letter) was accepted (and held, or its offset stored)."""
        assert self.consumer is not None
        topic = Delivered.of(msg).topic
        identity = record_identity(msg)
        message_id = identity.message_id
        try:
            self._enqueue(msg, identity)
        except (PoisonRecordError, FixInputError, ValidationError, ValueError) as exc:
            return self._dead_letter(msg, exc)
        except Exception as exc:  # the broker (Redis) is down or refused: retry, never drop
            self.metrics.enqueue_failures.labels(topic).inc()
            self.status.enqueue_failures += 1
            logger.warning(
                "enqueue of {} ({}) failed, will retry: {}: {}",
                message_id, identity.position, type(exc).__name__, exc,
            )  # fmt: skip
            return False
        if self.settled is None:
            self.consumer.store(msg)
        else:
            self.settled.enqueued(msg, message_id)
        self.metrics.enqueued.labels(topic).inc()
        shared_metrics.MESSAGES_INGESTED.inc(topic=topic)  # fleet-wide total in Redis (never raises)
        self.status.enqueued += 1
        logger.debug("enqueued chain for {} ({})", message_id, identity.position)
        return True

    def _enqueue(self, msg: Message, identity: RecordIdentity) -> None:
        millis = _timestamp_ms(msg)
        message = decode_incoming(msg.value())
        self.enqueue(
            message,
            identity.message_id,
            # To the millisecond: it orders one subscriber's messages written within one second.
            sent_at=millis / 1000 if millis is not None else None,
            fingerprint=identity.fingerprint,
            position=identity.position,
        )

    def _reenqueue(self, msg: Message) -> bool:
        """A held record Redis forgot (restarted from an older snapshot): publish its chain again."""
        identity = record_identity(msg)
        message_id = identity.message_id
        try:
            self._enqueue(msg, identity)
        except Exception as exc:  # decoded fine the first time: Redis is refusing again
            logger.warning("re-enqueue of {} failed, will retry: {}: {}", message_id, type(exc).__name__, exc)
            return False
        self.metrics.reenqueued.labels(msg.topic()).inc()
        self.status.reenqueued += 1
        return True

    def _dead_letter(self, msg: Message, error: Exception) -> bool:
        assert self.consumer is not None
        try:
            self.dead_letters.send(msg, error)
        except (RetryLaterError, KafkaClientError, redis.RedisError, RuntimeError) as exc:
            logger.warning("dead letter of {}:{} not accepted yet: {}", msg.topic(), msg.offset(), exc)
            return False
        if self.settled is None:
            self.consumer.store(msg)
        else:
            self.settled.dead_lettered(msg)
        self.metrics.dead_letters.labels(msg.topic()).inc()
        self.status.dead_letters += 1
        return True

    def _schedule_retry(self, part: TopicPart, backlog: Backlog) -> None:
        backlog.failures += 1
        delay = min(self.retry_backoff_max, 0.25 * 2 ** (backlog.failures - 1))
        backlog.retry_at = time.monotonic() + delay * (0.5 + random.random() / 2)

    # --- between polls ------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        for part, backlog in list(self.backlogs.items()):
            if backlog.retry_at <= now:
                self._drain(part, backlog)
        if now >= self._next_settle_check:
            self._next_settle_check = now + self.settle_check_interval
            self.commit_settled()
        self._sync_pauses()
        if now >= self._next_status:
            self._next_status = now + STATUS_INTERVAL
            self.publish_status()

    def _drain(self, part: TopicPart, backlog: Backlog) -> None:
        while backlog.records:
            if not self._process(backlog.records[0]):
                self._schedule_retry(part, backlog)
                return
            backlog.records.popleft()
        del self.backlogs[part]
        logger.info("partition {} caught up after {} failed attempts", part, backlog.failures)

    def commit_settled(self) -> None:
        """Read settlement from Redis, re-enqueue what it forgot, store the settled prefixes' offsets."""
        if self.settled is None or self.consumer is None:
            return
        if self.ledger_redis is not None:
            self.settled.check(self.ledger_redis, self._reenqueue)
        for msg in self.settled.committable():
            self.consumer.store(msg)

    def _sync_pauses(self) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        overloaded = self.backpressure.check() if self.backpressure is not None else False
        blocked = set(self.backlogs) | (self.settled.full() if self.settled is not None else set())
        wanted = set(consumer.assignment) if overloaded else blocked & consumer.assignment
        consumer.pause(wanted - consumer.paused)
        consumer.resume(consumer.paused - wanted)
        self.metrics.paused.set(1 if overloaded else 0)
        self.metrics.paused_partitions.set(len(consumer.paused))
        self.status.paused = overloaded
        if self.backpressure is not None and self.backpressure.depth is not None:
            self.metrics.queue_depth.set(self.backpressure.depth)
            self.status.queue_depth = self.backpressure.depth

    def on_stats(self, stats_json: str) -> None:
        """librdkafka statistics (called inside poll): per-partition consumer lag."""
        try:
            lags = lag_from_stats(stats_json)
        except ValueError:
            return
        assigned = self.consumer.assignment if self.consumer is not None else set()
        for (topic, partition), lag in lags.items():
            if (topic, partition) in assigned:
                self.metrics.lag.labels(topic, str(partition)).set(lag)
                self.status.lag[f"{topic}:{partition}"] = lag

    def publish_status(self) -> None:
        if self.consumer is not None:
            self.status.assigned = sorted(f"{t}:{p}" for t, p in self.consumer.assignment)
        self.status.backlog = {f"{t}:{p}": len(b.records) for (t, p), b in self.backlogs.items()}
        if self.settled is not None:
            self.status.held = {f"{t}:{p}": len(q) for (t, p), q in self.settled.held.items() if q}
            self.status.unsettled = self.settled.unsettled()
            self.metrics.unsettled.set(self.status.unsettled)
        if self.status_redis is not None:
            write_status(self.status_redis, self.status)

    # --- the loop -----------------------------------------------------------------------------------
    def run(self, consumer: GroupConsumer, stop: threading.Event) -> None:
        """Consume until ``stop``; then store what is done, commit and leave the group."""
        self.consumer = consumer
        try:
            run(consumer, self.on_message, stop, tick=self.tick, poll_timeout=0.2)
        finally:
            self.backlogs.clear()
            if not consumer.closed:
                try:  # the settled prefix goes with close()'s commit; the rest is read again
                    self.commit_settled()
                except Exception as exc:
                    logger.warning("settled offsets not stored at shutdown: {}", exc)
            if self.settled is not None:
                self.settled.clear()
            consumer.close()
            self.publish_status()
