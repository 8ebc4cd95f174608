"""Pause consumption while the Celery flows queue is too deep; resume below a lower mark (hysteresis).

Queue depth is ``LLEN <queue>`` on the broker's Redis. An unreadable depth (Redis down) keeps the
current state: enqueueing will fail anyway and is retried per partition.
"""

from __future__ import annotations

import time

import redis
from loguru import logger


class Backpressure:
    def __init__(
        self,
        client: redis.Redis,
        queue: str,
        *,
        pause_above: int,
        resume_below: int,
        check_interval: float = 0.5,
    ) -> None:
        if resume_below >= pause_above:
            raise ValueError(
                f"INGEST_RESUME_QUEUE_DEPTH ({resume_below}) must be below "
                f"INGEST_PAUSE_QUEUE_DEPTH ({pause_above})"
            )
        self.client = client
        self.queue = queue
        self.pause_above = pause_above
        self.resume_below = resume_below
        self.check_interval = check_interval
        self.paused = False
        self.depth: int | None = None
        self._next_check = 0.0

    def check(self) -> bool:
        """Whether consumption should be paused now (reads Redis at most every ``check_interval``)."""
        now = time.monotonic()
        if now < self._next_check:
            return self.paused
        self._next_check = now + self.check_interval
        try:
            self.depth = int(self.client.llen(self.queue))
        except redis.RedisError as exc:
            logger.debug("queue depth unknown: {}", exc)
            return self.paused
        if not self.paused and self.depth > self.pause_above:
            self.paused = True
            logger.warning("pausing Kafka: queue {} holds {} > {}", self.queue, self.depth, self.pause_above)
        elif self.paused and self.depth < self.resume_below:
            self.paused = False
            logger.info("resuming Kafka: queue {} holds {} < {}", self.queue, self.depth, self.resume_below)
        return self.paused
