"""The Celery app (``celery -A tasks worker|beat|flower|inspect``), configured for "nothing lost,
nothing twice".

Configuration is lazy (``add_defaults`` with a function): importing ``tasks`` reads no environment, so
``rdb24 --help`` or ``rdb24 tasks`` work without credentials; the first use of ``app.conf`` (worker
start, sending a task) loads ``Settings`` and a bad variable stops the process with a message naming
it. Each setting below says why it is chosen.
"""

from __future__ import annotations

import pkgutil
import sys
from importlib import util
from typing import Any

from celery import Celery, signals
from celery.app.amqp import AMQP, task_message
from kombu import Queue as KombuQueue

from tasks.runtime import broker, redis_target
from tasks.runtime.publishing import PUBLISH_RETRY_POLICY
from tasks.runtime.queues import DEFAULT_QUEUE, Queue, route_task

# Packages holding tasks; every module below them is imported by a worker.
TASK_PACKAGES = ("tasks.operations", "tasks.flows", "tasks.reconcile")
# Seconds a crashed worker's hold on kombu's restore-sweep mutex lasts (see celery_config).
RESTORE_MUTEX_EXPIRE = 10


def task_modules() -> list[str]:
    """Every module a worker must import so that it registers every task."""
    found: list[str] = []
    for package in TASK_PACKAGES:
        spec = util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        found.append(package)
        found.extend(
            m.name for m in pkgutil.walk_packages(spec.submodule_search_locations, prefix=f"{package}.")
        )
    return found


def celery_config() -> dict[str, Any]:
    """Celery settings from ``Settings``; evaluated on first use of ``app.conf``."""
    from tasks.errors import SettingsError
    from tasks.settings import get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        print(f"rdb24: {exc}", file=sys.stderr)
        raise
    target = redis_target.from_settings(settings)
    transport = {
        # sentinel:// URLs: kombu and Celery find the master by this name (tasks/runtime/redis_target.py)
        **target.transport_options(),
        # A message fetched but not acked is redelivered after this; it must exceed every retry
        # countdown (held as an ETA message in worker memory) or the retry runs twice. Same value on
        # every process: the restore sweep uses its own process's value.
        "visibility_timeout": settings.visibility_timeout,
    }
    broker_transport = {
        **transport,
        # The worker's sweep that restores those messages runs every interval x throttle seconds
        # (kombu's defaults: 10 x 10); throttle 1 makes REDIS_RESTORE_INTERVAL the one knob.
        "unacked_restore_interval": settings.redis_restore_interval,
        "unacked_restore_throttle": 1,
        # Each sweep runs under a Redis mutex that kombu lets expire after 300 s: a worker killed
        # inside a sweep (milliseconds, but workers sweep all the time) stopped every restore for
        # five minutes, so messages of a crashed worker sat in `unacked` that long. Sweeps are
        # safe to overlap (each restore is a WATCH transaction), so the mutex only has to cover one.
        "unacked_mutex_expire": RESTORE_MUTEX_EXPIRE,
        # Every wait has an end: a command unanswered for socket_timeout fails (a half-open
        # connection, a frozen Redis) instead of blocking the worker forever. It must exceed the
        # BRPOP timeout (kombu's brpop_timeout, 1 s), which blocks that long by design; kombu also
        # drops a BRPOP connection whose reply is overdue by health_check_interval.
        **settings.redis_client_options(),
    }
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        # JSON only: payloads are ids and JSON, readable by services that do not import our code,
        # and pickle would let anyone who can write to Redis run code in the worker.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Ack after the task returns: a worker killed mid-task leaves the message to be redelivered.
        "task_acks_late": True,
        # ...also when only the child process dies (OOM, SIGKILL): requeue instead of ack.
        "task_reject_on_worker_lost": True,
        # Reserve one message per process: a late-acked message held by a busy process is not
        # delayed behind a long task, and a crash loses at most what is running.
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": broker_transport,
        "result_backend_transport_options": dict(transport),
        # The result backend's own connection settings (it does not read the transport options).
        "redis_socket_timeout": settings.redis_socket_timeout,
        "redis_socket_connect_timeout": settings.redis_connect_timeout,
        "redis_socket_keepalive": True,
        "redis_backend_health_check_interval": settings.redis_health_check_interval,
        # Every task has an end, below the visibility timeout: past the soft limit the body gets
        # SoftTimeLimitExceeded (the operation retries it); past the hard one the process is killed
        # and the message requeued (OperationTask's request), counted as a worker crash.
        "task_soft_time_limit": settings.time_limits[0],
        "task_time_limit": settings.time_limits[1],
        # Events for Flower's live view and the sent event so it sees queued tasks too.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # STARTED state, so a task being run is distinguishable from one waiting in the queue.
        "task_track_started": True,
        # Results kept long enough for chains, dedup and inspection; Redis expires them itself.
        "result_expires": settings.result_expires,
        # Name, args and worker stored with the result: readable in Flower and `AsyncResult`.
        "result_extended": True,
        # A redelivered message whose task id already SUCCEEDED (crash after success, before ack) is
        # skipped. Needs a persistent result backend (Redis is) and result_expires longer than
        # the visibility timeout; it does not guard side effects of a run that crashed midway
        # (the flows' effect markers do that).
        "worker_deduplicate_successful_tasks": True,
        # Reconnect to Redis forever, at start and after a loss: a worker must outlive a Redis restart.
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        # After a connection loss running late-ack tasks can no longer ack and will be redelivered;
        # cancel them rather than let both copies run at once.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Result-backend writes wait for Redis to come back instead of failing. Without this, the
        # cancellation above loses messages: cancel() kills the task, then fails storing RETRY while
        # Redis is down, and the worker takes the killed task for a revoked one and ACKS it once Redis
        # is back. Task bodies' own result writes (STARTED, SUCCESS) likewise wait rather than fail.
        "result_backend_always_retry": True,
        "result_backend_max_sleep_between_retries_ms": 1000,  # back within ~1 s of Redis returning
        # Publishing from a task (the next chain step, a retry) waits out a short Redis restart
        # (~60 s) instead of Celery's default ~0.6 s. A step that succeeded must hand its result on:
        # if that publish gives up, the step is recorded as failed, its message acked, and the
        # chain ends there (the fault suite's Redis restart lost a message exactly so). The ingest
        # worker passes a short policy of its own: it keeps polling Kafka and retries by itself.
        "task_publish_retry": True,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        # Soft shutdown: on SIGQUIT (SIGTERM with REMAP_SIGTERM=SIGQUIT) running tasks get this long
        # to finish, then unfinished late-ack messages are requeued at once instead of waiting out
        # the visibility timeout. Also when idle, so held ETA retries go back to the queue.
        "worker_soft_shutdown_timeout": settings.worker_soft_shutdown_timeout,
        "worker_enable_soft_shutdown_on_idle": True,
        # Queues: one per service so a slow or rate-limited one cannot starve the others.
        "task_queues": [KombuQueue(q.value, routing_key=q.value) for q in Queue],
        "task_default_queue": DEFAULT_QUEUE.value,
        "task_routes": (route_task,),
        "task_create_missing_queues": False,
        # Never run tasks in the caller: tests and production both go through the broker.
        "task_always_eager": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts_level": "INFO",
        "timezone": "UTC",
        "enable_utc": True,
    }


def beat_config() -> dict[str, Any]:
    """The beat schedule and RedBeat (one active scheduler across beat processes), from Settings; lazy,
    like ``celery_config``, so importing ``tasks`` imports neither the schedule nor the settings."""
    from tasks.runtime.schedule import beat_defaults

    return beat_defaults()


class RedactingAMQP(AMQP):
    """Every message we publish (``delay``, ``send_task``, chains, retries) carries argument reprs with
    credential-looking values masked: they are what Flower, events and worker logs show. Tasks take
    no secrets; this is defence in depth. (Set here, not in a publish signal, because the ``task-sent``
    event is built from the same reprs before any signal runs.)"""

    def as_task_v2(
        self, task_id: str, name: str, args: Any = None, kwargs: Any = None, *rest: Any, **options: Any
    ) -> task_message:
        from tasks.runtime.redaction import redact

        if options.get("argsrepr") is None:
            options["argsrepr"] = repr(redact(list(args or ())))
        if options.get("kwargsrepr") is None:
            options["kwargsrepr"] = repr(redact(dict(kwargs or {})))
        return super().as_task_v2(task_id, name, args, kwargs, *rest, **options)


# The redis/rediss schemes use our transport: kombu's, plus requeue of a message fetched just as
# Redis went away (tasks.runtime.broker).
broker.install()

app = Celery("rdb24", include=task_modules(), set_as_current=True, amqp=RedactingAMQP)
app.add_defaults(celery_config)
app.add_defaults(beat_config)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """Having a receiver stops Celery installing its own handlers; loguru becomes the one sink."""
    from tasks.runtime import log
    from tasks.settings import get_settings

    log.configure(get_settings())


@signals.worker_init.connect
def _check_settings(**_: Any) -> None:
    """Warn, naming each variable, when a service a queue needs is not configured."""
    from loguru import logger

    from tasks.settings import get_settings

    settings = get_settings()
    missing = []
    if not settings.rosdomofon_username or not settings.rosdomofon_password.get_secret_value():
        missing.append("ROSDOMOFON_USERNAME/ROSDOMOFON_PASSWORD (rosdomofon.* tasks will fail)")
    if not settings.bitrix24_webhook_url.get_secret_value() and not settings.bitrix24_oauth_configured:
        missing.append(
            "BITRIX24_WEBHOOK_URL or BITRIX24_CLIENT_ID/BITRIX24_CLIENT_SECRET (bitrix24.* tasks will fail)"
        )
    for item in missing:
        logger.warning("not configured: {}", item)


@signals.worker_ready.connect
def _start_metrics(**_: Any) -> None:
    from tasks.runtime import metrics
    from tasks.settings import get_settings

    metrics.serve(get_settings().metrics_port)


def _configure_flower() -> None:
    """When this process is ``celery -A tasks flower``: basic auth, port and redaction from Settings.

    Runs at app import (Flower reads its options after loading the app, so ``FLOWER_*`` env vars or
    flags still override these).
    """
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.invoked_subcommand != "flower":
        return
    from tasks.runtime import flower

    flower.configure()


_configure_flower()
