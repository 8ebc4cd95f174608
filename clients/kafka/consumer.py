"""The one consumer both the embeddable client and the ingest worker are built on.

:class:`GroupConsumer` wraps a confluent ``Consumer`` in our single group with what at-least-once needs:
offsets are stored by the caller after processing, only in order and only for partitions still
assigned (a revoked partition may already be read by another process; librdkafka then answers
``_STATE``, which we treat as "not ours any more"). :func:`run` is the poll loop: one thread, a stop
event, an optional ``tick`` between polls (backpressure, retries, heartbeats).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from loguru import logger

from clients.kafka.config import KafkaConfig
from clients.kafka.errors import KafkaFatalError, translate
from clients.kafka.producer import Delivered

TopicPart = tuple[str, int]


class RebalanceListener(Protocol):
    def on_assigned(self, parts: list[TopicPart]) -> None: ...

    def on_revoked(self, parts: list[TopicPart], *, lost: bool) -> None: ...


def _parts(partitions: Iterable[TopicPartition]) -> list[TopicPart]:
    return [(tp.topic, tp.partition) for tp in partitions]


def _tps(parts: Iterable[TopicPart]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition) for topic, partition in parts]


class GroupConsumer:
    """A subscribed consumer that tracks its assignment, pauses and stored offsets; not thread-safe."""

    def __init__(
        self,
        config: KafkaConfig,
        topics: Sequence[str],
        *,
        listener: RebalanceListener | None = None,
        stats_cb: Callable[[str], None] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        conf: dict[str, Any] = {**config.consumer_config(), "error_cb": self._on_error, **(extra or {})}
        if stats_cb is not None:
            conf["stats_cb"] = stats_cb
            conf.setdefault("statistics.interval.ms", 5000)
        self.topics = list(topics)
        self.group_id = str(conf["group.id"])
        self.assignment: set[TopicPart] = set()
        self.paused: set[TopicPart] = set()
        self._stored: dict[TopicPart, int] = {}
        self._listener = listener
        self._consumer = Consumer(conf)
        self._consumer.subscribe(
            self.topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        self.closed = False

    # --- rebalance callbacks (run inside poll(), on the polling thread) -------------------------------
    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        parts = _parts(partitions)
        logger.info("kafka group {} assigned {}", self.group_id, parts)
        self.assignment.update(parts)
        for part in parts:
            self._stored.pop(part, None)
            self.paused.discard(part)
        if self._listener is not None:
            self._listener.on_assigned(parts)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(_parts(partitions), lost=False)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(_parts(partitions), lost=True)

    def _forget(self, parts: list[TopicPart], *, lost: bool) -> None:
        logger.info("kafka group {} {} {}", self.group_id, "lost" if lost else "revoked", parts)
        if self._listener is not None:
            self._listener.on_revoked(parts, lost=lost)
        if not lost:
            self.commit()  # hand over what we finished before another member takes the partitions
        for part in parts:
            self.assignment.discard(part)
            self.paused.discard(part)
            self._stored.pop(part, None)

    @staticmethod
    def _on_error(error: KafkaError) -> None:
        # Broker-down and similar are reported here; librdkafka reconnects on its own.
        if error.fatal():
            logger.error("kafka fatal error: {}", error.str())
        else:
            logger.warning("kafka: {} ({})", error.str(), error.name())

    # --- the loop's operations -----------------------------------------------------------------------
    def poll(self, timeout: float) -> Message | None:
        """The next record, or None; consumer-level errors are logged, fatal ones raised."""
        msg = self._consumer.poll(timeout)
        if msg is None:
            return None
        error = msg.error()
        if error is None:
            return msg
        if error.fatal():
            raise KafkaFatalError(f"consumer: {error.str()}", code=error.name())
        if error.code() != KafkaError._PARTITION_EOF:
            logger.warning("kafka consumer: {} ({})", error.str(), error.name())
        return None

    def store(self, msg: Message) -> bool:
        """Mark ``msg`` done so its offset is committed; never goes backwards, never for a lost partition."""
        where = Delivered.of(msg)
        part = (where.topic, where.partition)
        next_offset = where.offset + 1
        if part not in self.assignment or self._stored.get(part, -1) >= next_offset:
            return False
        try:
            self._consumer.store_offsets(offsets=[TopicPartition(part[0], part[1], next_offset)])
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError._STATE:
                logger.info("kafka partition {} no longer ours; offset {} not stored", part, msg.offset())
                return False
            raise translate(exc, context="store offset") from exc
        self._stored[part] = next_offset
        return True

    def pause(self, parts: Iterable[TopicPart]) -> None:
        todo = [p for p in parts if p in self.assignment and p not in self.paused]
        if todo:
            self._consumer.pause(_tps(todo))
            self.paused.update(todo)

    def resume(self, parts: Iterable[TopicPart]) -> None:
        todo = [p for p in parts if p in self.paused and p in self.assignment]
        if todo:
            self._consumer.resume(_tps(todo))
        self.paused.difference_update(parts)

    def commit(self) -> None:
        """Commit stored offsets now (auto commit does it every 5 s anyway)."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            code = exc.args[0].code()
            if code != KafkaError._NO_OFFSET:
                logger.warning("kafka commit failed: {}", exc.args[0].str())

    def close(self) -> None:
        """Commit what was stored, leave the group (so partitions move at once), free the client."""
        if self.closed:
            return
        self.closed = True
        self.commit()
        self._consumer.close()


def run(
    consumer: GroupConsumer,
    on_message: Callable[[Message], None],
    stop: threading.Event,
    *,
    tick: Callable[[], None] | None = None,
    poll_timeout: float = 0.5,
) -> None:
    """Poll until ``stop`` is set; the record in hand is always finished before returning."""
    while not stop.is_set():
        if tick is not None:
            tick()
        msg = consumer.poll(poll_timeout)
        if msg is not None:
            on_message(msg)
