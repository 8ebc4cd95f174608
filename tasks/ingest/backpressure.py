"""Pause consumption while the chain's Celery queues are too deep; resume below a lower mark.

Depth is the sum of ``LLEN <queue>`` on the broker's Redis over the watched queues (by default
``flows`` and ``bitrix24``: a Bitrix24 rate limit backs up only the contact step, so watching
``flows`` alone would let work pile up unbounded). An unreadable depth (Redis down) keeps the
current state: enqueueing fails anyway and is retried per partition.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis
from loguru import logger


class Backpressure:
    def __init__(
        self,
        client: redis.Redis,
        queues: Sequence[str],
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
        self.queues = list(queues)
        if not self.queues:
            raise ValueError("INGEST_BACKPRESSURE_QUEUES names no queue")
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
            pipe = self.client.pipeline(transaction=False)
            for queue in self.queues:
                pipe.llen(queue)
            self.depth = sum(int(n) for n in pipe.execute())
        except redis.RedisError as exc:
            logger.debug("queue depth unknown: {}", exc)
            return self.paused
        if not self.paused and self.depth > self.pause_above:
            self.paused = True
            logger.warning("pausing Kafka: queues {} hold {} > {}", self.queues, self.depth, self.pause_above)
        elif self.paused and self.depth < self.resume_below:
            self.paused = False
            logger.info("resuming Kafka: queues {} hold {} < {}", self.queues, self.depth, self.resume_below)
        return self.paused
