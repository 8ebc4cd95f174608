"""Wire settings into an :class:`IngestWorker` and run it until SIGTERM/SIGINT.

Shutdown: the signal sets a flag; the loop finishes the record in hand, the consumer commits stored
offsets and leaves the group, and the process exits 0. A watchdog bounds the whole shutdown by
``INGEST_SHUTDOWN_TIMEOUT`` (librdkafka's close can hang on a dead broker); if it fires the exit code
is 3 and the uncommitted tail is simply read again by the partition's next owner.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from loguru import logger

from clients.kafka import ConfirmedProducer, GroupConsumer, KafkaConfig
from tasks.ingest.backpressure import Backpressure
from tasks.ingest.dead_letters import DeadLetterSink
from tasks.ingest.metrics import IngestMetrics, IngestStatus
from tasks.ingest.settlement import SettledOffsets
from tasks.ingest.worker import Enqueue, IngestWorker
from tasks.runtime import redis_target
from tasks.runtime.kafka_setup import kafka_config
from tasks.settings import Settings, get_settings
from tasks.state.dead_letters import DeadLetterStore

WATCHDOG_EXIT_CODE = 3


def _default_enqueue() -> Enqueue:
    from tasks.flows.incoming_message import enqueue_incoming_message

    return enqueue_incoming_message


def build_worker(
    settings: Settings,
    config: KafkaConfig,
    *,
    enqueue: Enqueue | None = None,
) -> tuple[IngestWorker, GroupConsumer]:
    redis_client = redis_target.from_settings(settings).client(socket_timeout=5, socket_connect_timeout=5)
    metrics = IngestMetrics()
    metrics.serve(settings.ingest_metrics_port)
    topic = config.topics.messages_in
    worker = IngestWorker(
        enqueue=enqueue or _default_enqueue(),
        dead_letters=DeadLetterSink(
            ConfirmedProducer(config),
            suffix=settings.kafka_dlq_suffix,
            store=DeadLetterStore(redis_client, max_items=getattr(settings, "dead_letter_max", 100_000)),
        ),
        backpressure=Backpressure(
            redis_client,
            [q.strip() for q in settings.ingest_backpressure_queues.split(",") if q.strip()],
            pause_above=settings.ingest_pause_queue_depth,
            resume_below=settings.ingest_resume_queue_depth,
            check_interval=settings.ingest_backpressure_interval,
        ),
        metrics=metrics,
        status=IngestStatus(group=config.effective_group_id, topic=topic),
        status_redis=redis_client,
        retry_backoff_max=settings.ingest_retry_backoff_max,
        settled=SettledOffsets(grace=settings.ingest_commit_grace, max_held=settings.ingest_max_held),
        ledger_redis=redis_client,
        settle_check_interval=settings.ingest_settle_check_interval,
    )
    extra: dict[str, Any] = {}
    if settings.ingest_stats_interval_ms:
        extra["statistics.interval.ms"] = settings.ingest_stats_interval_ms
    consumer = GroupConsumer(
        config,
        [topic],
        listener=worker,
        stats_cb=worker.on_stats if settings.ingest_stats_interval_ms else None,
        extra=extra,
    )
    return worker, consumer


def _install_signal_handlers(stop: threading.Event, timeout: float) -> None:
    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            return
        logger.info("ingest: {} received, finishing the record in hand", signal.Signals(signum).name)
        stop.set()
        _start_watchdog(timeout)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def _start_watchdog(timeout: float, exit: Callable[[int], Any] = os._exit) -> None:
    def fire() -> None:
        logger.error("ingest: shutdown took longer than {:g}s; exiting anyway", timeout)
        exit(WATCHDOG_EXIT_CODE)

    timer = threading.Timer(timeout, fire)
    timer.daemon = True
    timer.start()


def run_ingest(
    settings: Settings | None = None,
    *,
    enqueue: Enqueue | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Consume until a signal (or ``stop``); returns the process exit code."""
    settings = settings or get_settings()
    config = kafka_config(settings)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        _install_signal_handlers(stop, settings.ingest_shutdown_timeout)
    worker, consumer = build_worker(settings, config, enqueue=enqueue)
    logger.info(
        "ingest: consuming {} as group {} (pause above {} queued flows)",
        config.topics.messages_in,
        config.effective_group_id,
        settings.ingest_pause_queue_depth,
    )
    worker.run(consumer, stop)
    logger.info(
        "ingest: stopped after {} records ({} chains, {} dead letters)",
        worker.status.consumed,
        worker.status.enqueued,
        worker.status.dead_letters,
    )
    return 0
