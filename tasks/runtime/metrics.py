"""Our own Prometheus counters, stored in Redis so every process and host adds to the same numbers.

Why Redis and not ``prometheus_client``'s multiprocess mode: counts come from prefork children,
the ingest process and the webhook receiver, possibly on several hosts. Each increment is one
``HINCRBY`` (cheap next to the HTTP call it counts); any process can export the totals, so the
exporter started by each worker (``METRICS_PORT``) serves the same numbers and a second one on the
same host simply does not bind. A failed increment is logged and never fails a task.

Use: ``metrics.RETRIES.inc(task="rosdomofon.block_account", cause="rate_limited")``.

Gauges come two ways: a :class:`RedisGauge` holds a value some process sets (exported as 0 until
then), and ``tasks.state.gauges`` reads what Redis holds at scrape time (queue depths, dead letters
waiting, ingest lag, bucket fill). The dashboard and alert rules in ``deploy/`` use only these names.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import redis
from loguru import logger
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tasks.state import keys

KEY_PREFIX = keys.METRICS_PREFIX
_REGISTRY_LOCK = threading.Lock()
_counters: dict[str, RedisCounter] = {}
_gauges: dict[str, RedisGauge] = {}
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        from tasks.runtime.resources import state_redis
        from tasks.settings import get_settings

        _client = state_redis(get_settings())  # its own client: counters outlive clients.reset()
    return _client


def use_redis(client: redis.Redis | None) -> None:
    """Point the counters at another Redis (tests, or a process with its own client); None resets."""
    global _client
    _client = client


class RedisCounter:
    """A labelled counter whose value lives in a Redis hash (field = JSON of the label values)."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        with _REGISTRY_LOCK:
            _counters[name] = self

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name

    def _field(self, labels: dict[str, str]) -> str:
        missing = set(self.labelnames) ^ set(labels)
        if missing:
            raise ValueError(f"counter {self.name} needs labels {self.labelnames}, got {sorted(labels)}")
        return json.dumps([str(labels[n]) for n in self.labelnames])

    def inc(self, amount: float = 1, **labels: str) -> None:
        try:
            _redis().hincrbyfloat(self.key, self._field(labels), amount)
        except redis.RedisError as exc:
            logger.warning("metric {} not counted: {}", self.name, exc)

    def value(self, **labels: str) -> float:
        """Current total for exactly these labels (0 when never counted)."""
        raw = _redis().hget(self.key, self._field(labels))
        return float(raw) if raw is not None else 0.0

    def total(self, **partial: str) -> float:
        """Sum over every label set matching the given subset of labels."""
        result = 0.0
        for labels, amount in self.samples():
            if all(labels.get(k) == v for k, v in partial.items()):
                result += amount
        return result

    def samples(self) -> Iterator[tuple[dict[str, str], float]]:
        for field, raw in _redis().hgetall(self.key).items():
            values = json.loads(field)
            yield dict(zip(self.labelnames, values, strict=False)), float(raw)


class RedisGauge:
    """An unlabelled gauge whose value lives in a Redis string, set by the process that knows it."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        with _REGISTRY_LOCK:
            _gauges[name] = self

    @property
    def key(self) -> str:
        return KEY_PREFIX + self.name

    def set(self, value: float) -> None:
        try:
            _redis().set(self.key, value)
        except redis.RedisError as exc:
            logger.warning("metric {} not set: {}", self.name, exc)

    def value(self) -> float:
        """The last value set (0 when never set)."""
        raw = _redis().get(self.key)
        return float(raw) if raw is not None else 0.0


class _RedisCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for counter in list(_counters.values()):
            family = CounterMetricFamily(counter.name, counter.documentation, labels=list(counter.labelnames))
            try:
                for labels, amount in counter.samples():
                    family.add_metric([labels.get(n, "") for n in counter.labelnames], amount)
            except redis.RedisError as exc:
                logger.warning("metrics export failed: {}", exc)
            yield family
        for gauge in list(_gauges.values()):
            try:
                yield GaugeMetricFamily(gauge.name, gauge.documentation, value=gauge.value())
            except redis.RedisError as exc:
                logger.warning("metrics export failed: {}", exc)


def registry() -> CollectorRegistry:
    from tasks.settings import get_settings
    from tasks.state.gauges import StateCollector

    settings = get_settings()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_RedisCollector())
    reg.register(StateCollector(_redis, rate=settings.bitrix24_rate, burst=settings.bitrix24_burst))
    return reg


def serve(port: int, addr: str = "0.0.0.0") -> bool:
    """Start the exporter in a daemon thread; False when the port is taken (another process serves)."""
    if port <= 0:
        return False
    try:
        start_http_server(port, addr=addr, registry=registry())
    except OSError as exc:
        logger.debug("metrics exporter not started on :{} ({}); another process serves it", port, exc)
        return False
    logger.info("metrics exporter on :{}", port)
    return True


def snapshot() -> dict[str, Any]:
    """Every counter as {name: [{labels..., value}]}, for CLIs and tests."""
    return {
        name: [{**labels, "value": amount} for labels, amount in counter.samples()]
        for name, counter in _counters.items()
    }


MESSAGES_INGESTED = RedisCounter(
    "rdb24_messages_ingested_total", "Kafka subscriber messages turned into chains", ("topic",)
)
CONTACTS = RedisCounter("rdb24_contacts_total", "Bitrix24 contacts resolved, by outcome", ("outcome",))
CHAT_POSTS = RedisCounter("rdb24_chat_posts_total", "Messages posted to Bitrix24 chats", ("mode",))
DEAD_LETTERS = RedisCounter(
    "rdb24_dead_letters_total", "Records put in the dead-letter store", ("kind", "name")
)
RETRIES = RedisCounter("rdb24_task_retries_total", "Task retries, by task and cause", ("task", "cause"))
RATE_LIMIT_WAIT = RedisCounter(
    "rdb24_rate_limit_wait_seconds_total", "Seconds tasks were deferred by rate limits", ("task",)
)
MESSAGES_RESENT = RedisCounter(
    "rdb24_messages_resent_total", "Chains enqueued again by the in-flight ledger (task message lost)", ()
)
TASKS = RedisCounter("rdb24_task_outcomes_total", "Task attempts by outcome", ("task", "outcome"))
REPLIES_RESENT_UNKNOWN = RedisCounter(
    "rdb24_replies_resent_unknown_total",
    "Operator replies sent again after an interrupted send that could not be recognised (may repeat)",
    ("transport",),
)
REPLY_ORDER_GIVEN_UP = RedisCounter(
    "rdb24_reply_order_given_up_total",
    "Operator replies sent before an earlier one (REPLY_ORDER_WAIT passed)",
    (),
)
ORDER_WAITS_EXPIRED = RedisCounter(
    "rdb24_order_waits_expired_total",
    "Messages posted out of order: their predecessor was still pending after ORDER_WAIT_MAX",
    (),
)
DEAD_LETTER_STORE_FULL = RedisGauge(
    "rdb24_dead_letter_store_full",
    "1 while the dead-letter store is above DEAD_LETTER_MAX (letters that carry a message are never dropped)",
)
MESSAGE_ID_CONFLICTS = RedisCounter(
    "rdb24_message_id_conflicts_total",
    "Effect markers found under a message id but left by another message (other fingerprint)",
    ("step",),
)
DEAD_LETTERS_OVER_LIMIT = RedisCounter(
    "rdb24_dead_letter_store_full_total",
    "Dead letters stored above DEAD_LETTER_MAX that could not be trimmed (they carry a message)",
    (),
)
INFLIGHT_UNREADABLE = RedisCounter(
    "rdb24_inflight_unreadable_total",
    "In-flight ledger entries the resend sweep could not read, moved aside",
    (),
)
TEXTS_SPLIT = RedisCounter(
    "rdb24_texts_split_total", "Subscriber messages longer than a chat message, posted in parts", ("mode",)
)
