"""Which Kafka offsets may be committed: only those of records whose message was settled.

Accepted by Redis is not enough: a Redis that restarts from a snapshot lacking its last seconds (or
loses its data outright) forgets chains and ledger entries it had acknowledged, and a committed offset
would never bring those records back. So each record the ingest worker enqueued waits here, per
partition and in offset order, until the in-flight ledger shows its settlement receipt (posted or
dead-lettered, :func:`tasks.state.inflight.settlement`), and at least ``grace`` seconds have passed
since (by then an ``appendfsync everysec`` Redis has the receipt, and any dead letter, on disk). Only
the longest settled prefix of a partition is stored for commit. A record that Redis no longer knows at
all (neither in the ledger nor settled) is handed back to be enqueued again; its effect markers make
that harmless when its first chain did run.

The cost: a slow message holds back the commit (never the consumption) of its partition, and a
restart or rebalance re-reads, and enqueues again, everything after the partition's oldest unsettled
record. ``max_held`` bounds the records held per partition; above it the worker pauses the partition.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from confluent_kafka import Message
from loguru import logger

from clients.kafka import TopicPart
from tasks.state import inflight


@dataclass
class Held:
    """One record enqueued (or dead-lettered at ingest) whose offset is not stored yet."""

    msg: Message
    key: str | None  # in-flight ledger key; None: nothing to wait for (the record was dead-lettered here)
    settled_at: float | None = None  # unix seconds of the receipt (or of the dead letter)


class SettledOffsets:
    """Per-partition queues of held records; :meth:`check` reads Redis, :meth:`committable` pops."""

    def __init__(self, *, grace: float, max_held: int) -> None:
        self.grace = grace
        self.max_held = max_held
        self.held: dict[TopicPart, deque[Held]] = {}
        self._read_failing = False  # warn once per Redis outage, not every check

    # --- what the worker feeds in --------------------------------------------------------------------
    def enqueued(self, msg: Message, key: str) -> None:
        self._queue(msg).append(Held(msg, key))

    def dead_lettered(self, msg: Message) -> None:
        """Sent to the dead-letter topic and store by the ingest worker itself: settled now."""
        self._queue(msg).append(Held(msg, None, settled_at=time.time()))

    def forget(self, parts: Iterable[TopicPart]) -> None:
        for part in parts:
            self.held.pop(part, None)

    def clear(self) -> None:
        self.held.clear()

    # --- reading --------------------------------------------------------------------------------------
    def count(self, part: TopicPart | None = None) -> int:
        if part is not None:
            return len(self.held.get(part, ()))
        return sum(len(q) for q in self.held.values())

    def unsettled(self) -> int:
        return sum(1 for q in self.held.values() for h in q if h.settled_at is None)

    def full(self) -> set[TopicPart]:
        """Partitions holding ``max_held`` records or more: pause them until their head settles."""
        return {part for part, queue in self.held.items() if len(queue) >= self.max_held}

    def check(self, client: redis.Redis, reenqueue: Callable[[Message], bool]) -> int:
        """Ask Redis about every unsettled record (one round trip); returns how many were enqueued again.

        ``reenqueue`` is called for a record Redis has forgotten; it returns False when that failed
        (the record stays unknown and is tried on the next check).
        """
        waiting = [h for queue in self.held.values() for h in queue if h.settled_at is None and h.key]
        if not waiting:
            return 0
        try:
            states = inflight.settlement(client, [h.key for h in waiting if h.key])
        except redis.RedisError as exc:
            log = logger.debug if self._read_failing else logger.warning
            log("settlement of {} records not read (offsets wait): {}", len(waiting), exc)
            self._read_failing = True
            return 0
        self._read_failing = False
        again = 0
        for held, (state, when) in zip(waiting, states, strict=True):
            if state is inflight.Settlement.SETTLED:
                held.settled_at = when
            elif state is inflight.Settlement.UNKNOWN:
                logger.warning("{} is unknown to Redis (lost with its data?): enqueueing it again", held.key)
                if reenqueue(held.msg):
                    again += 1
        return again

    def committable(self, now: float | None = None) -> list[Message]:
        """Per partition, the last record of its settled prefix (popped): the offsets to store."""
        now = time.time() if now is None else now
        out = []
        for queue in self.held.values():
            last = None
            while queue and queue[0].settled_at is not None and queue[0].settled_at + self.grace <= now:
                last = queue.popleft()
            if last is not None:
                out.append(last.msg)
        return out

    def _queue(self, msg: Message) -> deque[Held]:
        part: TopicPart = (str(msg.topic()), int(msg.partition() or 0))  # always set on consumed records
        return self.held.setdefault(part, deque())


__all__ = ["Held", "SettledOffsets"]
