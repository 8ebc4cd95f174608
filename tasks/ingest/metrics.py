"""What one ingest process exposes: Prometheus metrics on its own port and a status snapshot in Redis.

Counters here are per process (Prometheus sums them across pods); consumer lag comes from librdkafka's
statistics (``stats_cb``), which report per assigned partition how far the group's committed offset
trails the partition end. The Redis snapshot (``rdb24:ingest:status:<host>-<pid>``, expiring) lets
``rdb24 status`` show every live ingest process without scraping them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tasks.state import keys

STATUS_KEY_PREFIX = keys.INGEST_STATUS_PREFIX
STATUS_TTL_SECONDS = 30


class IngestMetrics:
    """Prometheus series of one ingest process, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("topic",)
        self.consumed = Counter(
            "rdb24_ingest_records_consumed", "Kafka records read", labels, registry=self.registry
        )
        self.enqueued = Counter(
            "rdb24_ingest_chains_enqueued",
            "Incoming-message chains accepted by Celery's broker",
            labels,
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "rdb24_ingest_dead_letters",
            "Unreadable records sent to the dead-letter topic",
            labels,
            registry=self.registry,
        )
        self.enqueue_failures = Counter(
            "rdb24_ingest_enqueue_failures",
            "Enqueue attempts that failed and will be retried",
            labels,
            registry=self.registry,
        )
        self.reenqueued = Counter(
            "rdb24_ingest_chains_reenqueued",
            "Held records Redis had forgotten (restarted from an older snapshot), enqueued again",
            labels,
            registry=self.registry,
        )
        self.unsettled = Gauge(
            "rdb24_ingest_unsettled_records",
            "Records enqueued whose message is not posted or dead-lettered yet (offsets not committed)",
            registry=self.registry,
        )
        self.lag = Gauge(
            "rdb24_ingest_consumer_lag",
            "Records behind the partition end (committed offset)",
            ("topic", "partition"),
            registry=self.registry,
        )
        self.paused = Gauge(
            "rdb24_ingest_paused",
            "1 while consumption is paused for Celery queue depth",
            registry=self.registry,
        )
        self.paused_partitions = Gauge(
            "rdb24_ingest_paused_partitions", "Assigned partitions currently paused", registry=self.registry
        )
        self.queue_depth = Gauge(
            "rdb24_ingest_queue_depth",
            "Last seen summed length of the watched Celery queues",
            registry=self.registry,
        )

    def serve(self, port: int) -> bool:
        if port <= 0:
            return False
        try:
            start_http_server(port, registry=self.registry)
        except OSError as exc:
            logger.warning("ingest metrics not served on :{} ({})", port, exc)
            return False
        logger.info("ingest metrics on :{}", port)
        return True


@dataclass
class IngestStatus:
    """The snapshot written to Redis; counts are since this process started."""

    group: str
    topic: str
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    started_at: float = field(default_factory=time.time)
    consumed: int = 0
    enqueued: int = 0
    dead_letters: int = 0
    enqueue_failures: int = 0
    reenqueued: int = 0
    unsettled: int = 0  # records enqueued and not settled yet, all partitions
    paused: bool = False
    queue_depth: int | None = None
    assigned: list[str] = field(default_factory=list)
    backlog: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # per partition: records whose offset waits
    lag: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "heartbeat": time.time()}


def lag_from_stats(stats_json: str) -> dict[tuple[str, int], int]:
    """Per-partition ``consumer_lag`` from a librdkafka statistics document (unknown lag is skipped)."""
    stats = json.loads(stats_json)
    lags: dict[tuple[str, int], int] = {}
    for topic, topic_stats in (stats.get("topics") or {}).items():
        for partition, p in (topic_stats.get("partitions") or {}).items():
            pid = int(partition)
            lag = p.get("consumer_lag", -1)
            if pid >= 0 and lag is not None and lag >= 0:
                lags[(topic, pid)] = int(lag)
    return lags


def write_status(client: redis.Redis, status: IngestStatus) -> None:
    """Best effort: a Redis outage must not stop consumption (it is already handled as backpressure)."""
    try:
        client.set(STATUS_KEY_PREFIX + status.consumer, json.dumps(status.as_dict()), ex=STATUS_TTL_SECONDS)
    except redis.RedisError as exc:
        logger.debug("ingest status not written: {}", exc)


def read_statuses(client: redis.Redis) -> list[dict[str, Any]]:
    """Every live ingest process's snapshot (for ``rdb24 status``)."""
    out = []
    for key in client.scan_iter(match=STATUS_KEY_PREFIX + "*", count=100):
        raw = client.get(key)
        if raw:
            out.append(json.loads(raw))
    return sorted(out, key=lambda s: s.get("consumer", ""))
