"""Gauges of what the system holds right now, read from Redis when Prometheus scrapes.

Counters say what happened; an alert on "queue depth", "ingest lag" or "dead letters waiting" needs
the current amount, and Redis already has it (the queues, the in-flight ledger, the dead-letter
store, the ingest processes' status snapshots, the shared rate-limit bucket). Reading at scrape time
keeps every worker's exporter serving the same numbers with nothing to update on the hot path.
The same readings back ``rdb24 status`` (``tasks.cli.status_report``), which shows them as a table.

A failed reading is logged and leaves that family out of the scrape: the exporter never fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import redis
from loguru import logger
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tasks.state import keys

# Keys written by other rooms (the rate limiter, the ingest worker, reconciliation): all in keys.py.
BUCKET_PREFIX = keys.BITRIX24_BUCKET_PREFIX
INGEST_STATUS_PREFIX = keys.INGEST_STATUS_PREFIX
RECONCILE_REPORT_KEY = keys.RECONCILE_LAST_REPORT


def queue_depths(client: redis.Redis) -> dict[str, int]:
    """Messages waiting per Celery queue (kombu keeps priority levels in sibling lists)."""
    from tasks.runtime.queues import Queue

    return {
        queue.value: int(client.llen(queue.value))
        + sum(int(client.llen(key)) for key in client.scan_iter(match=f"{queue.value}\x06\x16*"))
        for queue in Queue
    }


def bucket_levels(client: redis.Redis, rate: float) -> dict[str, float]:
    """Each Bitrix24 bucket's level now (requests booked and not yet drained), by portal."""
    seconds, micros = client.time()
    now = float(seconds) + float(micros) / 1e6
    levels: dict[str, float] = {}
    for key in client.scan_iter(match=BUCKET_PREFIX + "*"):
        level_raw, ts_raw = client.hmget(key, "level", "ts")
        name = key.decode() if isinstance(key, bytes) else str(key)
        drained = (now - float(ts_raw or now)) * rate
        levels[name.removeprefix(BUCKET_PREFIX)] = max(0.0, float(level_raw or 0) - drained)
    return levels


class StateCollector(Collector):
    """The gauges, one family per reading; needs the client and the limiter's rate and burst."""

    def __init__(self, client: Callable[[], redis.Redis], rate: float, burst: int) -> None:
        self._client = client
        self.rate = rate
        self.burst = burst

    def collect(self) -> Iterator[GaugeMetricFamily]:
        client = self._client()
        for read in (self._queues, self._inflight, self._dead_letters, self._ingest, self._limiter,
                     self._reconciliation):  # fmt: skip
            try:
                yield from read(client)
            except (redis.RedisError, ValueError) as exc:
                logger.warning("gauge {} not exported: {}", read.__name__.lstrip("_"), exc)

    def _queues(self, client: redis.Redis) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "rdb24_queue_depth", "Task messages waiting in a Celery queue", labels=["queue"]
        )
        for queue, count in queue_depths(client).items():
            depth.add_metric([queue], count)
        yield depth
        yield GaugeMetricFamily(
            "rdb24_queue_unacked", "Task messages delivered to a worker, not yet acknowledged",
            value=int(client.hlen("unacked")),
        )  # fmt: skip

    def _inflight(self, client: redis.Redis) -> Iterator[GaugeMetricFamily]:
        from tasks.state import inflight

        yield GaugeMetricFamily(
            "rdb24_inflight_messages", "Subscriber messages not yet posted and replies not yet delivered",
            value=inflight.count(client),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "rdb24_inflight_oldest_age_seconds",
            "Age of the oldest unit of work in flight: how late the slowest message is (0 when none)",
            value=inflight.oldest_age(client) or 0.0,
        )

    def _dead_letters(self, client: redis.Redis) -> Iterator[GaugeMetricFamily]:
        from tasks.state.dead_letters import DeadLetterStore

        yield GaugeMetricFamily(
            "rdb24_dead_letters_stored", "Records waiting in the dead-letter store for a replay or delete",
            value=DeadLetterStore(client).count(),
        )  # fmt: skip

    def _ingest(self, client: redis.Redis) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "rdb24_ingest_lag_records", "Kafka records behind the partition ends, per ingest process",
            labels=["consumer"],
        )  # fmt: skip
        age = GaugeMetricFamily(
            "rdb24_ingest_heartbeat_age_seconds", "Seconds since an ingest process last wrote its status",
            labels=["consumer"],
        )  # fmt: skip
        statuses = [
            json.loads(raw)
            for raw in map(client.get, client.scan_iter(match=INGEST_STATUS_PREFIX + "*"))
            if raw
        ]
        for status in statuses:
            consumer = str(status.get("consumer", "?"))
            lag.add_metric([consumer], sum(int(v) for v in (status.get("lag") or {}).values()))
            age.add_metric([consumer], max(0.0, time.time() - float(status.get("heartbeat", 0))))
        yield lag
        yield age
        yield GaugeMetricFamily(
            "rdb24_ingest_processes", "Ingest processes whose status snapshot is live", value=len(statuses)
        )

    def _limiter(self, client: redis.Redis) -> Iterator[GaugeMetricFamily]:
        fill = GaugeMetricFamily(
            "rdb24_bitrix24_bucket_fill_ratio",
            "Bitrix24 rate-limit bucket level over its burst (above 1: requests queue for the portal)",
            labels=["bucket"],
        )
        for bucket, level in bucket_levels(client, self.rate).items():
            fill.add_metric([bucket], level / max(1, self.burst))
        yield fill

    def _reconciliation(self, client: redis.Redis) -> Iterator[GaugeMetricFamily]:
        raw = client.get(RECONCILE_REPORT_KEY)
        report = json.loads(raw) if raw else {}
        finished = float(report.get("finished_at") or report.get("started_at") or 0)
        yield GaugeMetricFamily(
            "rdb24_reconcile_last_run_timestamp_seconds",
            "When the last reconciliation run finished (Unix time; 0: none yet)",
            value=finished,
        )
        yield GaugeMetricFamily(
            "rdb24_reconcile_last_run_failed", "1 when the last reconciliation run failed",
            value=1 if report.get("status") == "failed" else 0,
        )  # fmt: skip
