"""The whole beat schedule, in one module, from ``Settings``; and RedBeat so only one beat schedules.

Run as many ``celery -A tasks beat`` processes as you like (one per host for availability): RedBeat
keeps the schedule in Redis and lets only the holder of the lock ``rdb24:redbeat::lock`` send due
tasks. A standby retries the lock every ``beat_max_loop_interval`` and takes over at most
``REDBEAT_LOCK_TIMEOUT`` seconds after the active beat died (it extends the lock on every tick, so the
loop interval is kept well under the timeout). A short timeout fails over faster but risks a false
takeover during a long Redis blip (docs/celery-kafka-reliability.md §4).

Every entry expires after ~1.5x its interval: a run that no worker picked up before the next one is
due is dropped instead of piling up behind it.

Applied to the app by ``app.add_defaults(beat_config)`` in ``tasks/runtime/app.py`` (lazy, like the
rest of the configuration).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from celery.schedules import crontab

from tasks.errors import ScheduleError
from tasks.runtime.queues import Queue
from tasks.settings import Settings, get_settings
from tasks.state import keys

RECONCILE_TASK = "reconcile.run"
RESEND_STALLED_TASK = "flows.resend_stalled_messages"
FLUSH_OUTBOX_TASK = "bitrix24.flush_posts"
FLUSH_OUTBOX_PERIOD = 60.0
REDBEAT_KEY_PREFIX = keys.REDBEAT_PREFIX
EXPIRY_FACTOR = 1.5


def parse_crontab(expression: str) -> crontab:
    """``"m h dom mon dow"`` -> celery ``crontab`` (UTC), with an error naming RECONCILE_CRONTAB."""
    parts = expression.split()
    if len(parts) != 5:
        raise ScheduleError(f"RECONCILE_CRONTAB {expression!r} must have 5 fields: minute hour dom month dow")
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except ValueError as exc:
        raise ScheduleError(f"RECONCILE_CRONTAB {expression!r}: {exc}") from None


class _ParsedCrontab(Protocol):
    """The sets a ``crontab`` parses its fields into: public at run time, left out of the celery stubs."""

    minute: set[int]
    hour: set[int]
    day_of_month: set[int]
    month_of_year: set[int]
    day_of_week: set[int]


def crontab_period(schedule: crontab, *, horizon_days: int = 8) -> float:
    """The shortest gap, in seconds, between two consecutive firings (scanned minute by minute)."""
    fields = cast(_ParsedCrontab, schedule)
    start = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday; the scan covers every weekday
    previous: datetime | None = None
    shortest: float | None = None
    for step in range(horizon_days * 24 * 60):
        moment = start + timedelta(minutes=step)
        fires = (
            moment.minute in fields.minute
            and moment.hour in fields.hour
            and moment.day in fields.day_of_month
            and moment.month in fields.month_of_year
            and moment.isoweekday() % 7 in fields.day_of_week
        )
        if not fires:
            continue
        if previous is not None:
            gap = (moment - previous).total_seconds()
            shortest = gap if shortest is None else min(shortest, gap)
        previous = moment
    # Fires once (or never) in the horizon: monthly or rarer; a day of expiry is plenty.
    return shortest if shortest is not None else 86400.0


def reconcile_entry(settings: Settings) -> dict[str, Any]:
    schedule: crontab | timedelta
    if settings.reconcile_crontab.strip():
        schedule = parse_crontab(settings.reconcile_crontab)
        period = crontab_period(schedule)
    else:
        period = settings.reconcile_interval_seconds
        schedule = timedelta(seconds=period)
    return {
        "task": RECONCILE_TASK,
        "schedule": schedule,
        "kwargs": {},
        "options": {"queue": Queue.RECONCILE.value, "expires": round(period * EXPIRY_FACTOR, 3)},
    }


def resend_stalled_entry(settings: Settings) -> dict[str, Any]:
    """The in-flight ledger's sweep (``tasks/state/inflight.py``): messages whose task message was lost."""
    period = settings.stalled_sweep_interval
    return {
        "task": RESEND_STALLED_TASK,
        "schedule": timedelta(seconds=period),
        "kwargs": {},
        "options": {"queue": Queue.FLOWS.value, "expires": round(period * EXPIRY_FACTOR, 3)},
    }


def flush_outbox_entry() -> dict[str, Any]:
    """A flush of the post outbox (``tasks/flows/post_batch.py``) now and then, whatever arrives: a
    flusher killed mid-batch leaves its messages waiting, and without new traffic no one else would
    schedule the next flush before its task is redelivered (``VISIBILITY_TIMEOUT``)."""
    return {
        "task": FLUSH_OUTBOX_TASK,
        "schedule": timedelta(seconds=FLUSH_OUTBOX_PERIOD),
        "kwargs": {},
        "options": {"queue": Queue.BITRIX24.value, "expires": round(FLUSH_OUTBOX_PERIOD * EXPIRY_FACTOR, 3)},
    }


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "reconcile-accounts": reconcile_entry(settings),
        "resend-stalled-messages": resend_stalled_entry(settings),
        "flush-outbox": flush_outbox_entry(),
    }


def beat_defaults(settings: Settings | None = None) -> dict[str, Any]:
    """Celery settings for beat: the schedule and RedBeat (one active scheduler across processes)."""
    settings = settings or get_settings()
    lock_timeout = settings.redbeat_lock_timeout
    return {
        "beat_schedule": beat_schedule(settings),
        "beat_scheduler": "redbeat.RedBeatScheduler",
        "redbeat_redis_url": settings.redis_url,
        "redbeat_key_prefix": REDBEAT_KEY_PREFIX,
        "redbeat_lock_timeout": lock_timeout,
        # The active beat extends its lock each tick; ticking 5x per timeout keeps it safely held,
        # and a standby polls the lock at this pace too.
        "beat_max_loop_interval": max(1, lock_timeout // 5),
    }


def redbeat_lock_key() -> str:
    return keys.REDBEAT_LOCK


__all__ = [
    "FLUSH_OUTBOX_TASK",
    "RECONCILE_TASK",
    "RESEND_STALLED_TASK",
    "beat_defaults",
    "beat_schedule",
    "crontab_period",
    "flush_outbox_entry",
    "parse_crontab",
    "reconcile_entry",
    "redbeat_lock_key",
    "resend_stalled_entry",
]
