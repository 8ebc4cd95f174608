"""What ``rdb24 status`` reports, gathered section by section from Redis and the workers.

Each section is collected on its own and a failure becomes that section's "unavailable: why" line,
so one missing piece (no ingest running, Redis down, a module not deployed) never hides the rest.
A :class:`Report` sums the sections up for scripts: a :class:`Verdict` (the exit code of
``rdb24 status``) and a JSON document whose keys are part of the interface (README "rdb24 status").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from tasks.runtime import redis_target
from tasks.settings import Settings
from tasks.state import gauges, inflight, keys

REDBEAT_LOCK_PATTERN = keys.REDBEAT_LOCK_PATTERN
INGEST_STALE_SECONDS = 60.0


JSON_VERSION = 1  # bump when a key of Report.as_json() changes meaning or goes away


class Verdict(IntEnum):
    """The whole report in one number: ``rdb24 status`` exits with it."""

    HEALTHY = 0  # every section healthy
    ATTENTION = 1  # Redis answers, but some section needs a look (no worker, stale ingest, ...)
    UNREACHABLE = 2  # Redis does not answer: nothing else could be checked


class Section(BaseModel):
    """One block of the report: rows of (item, value, note), or why it is unavailable."""

    title: str
    key: str = ""  # stable name for scripts (JSON); the title is for people
    rows: list[tuple[str, str, str]] = Field(default_factory=list)
    error: str | None = None
    healthy: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "healthy": self.healthy,
            "error": self.error,
            "rows": [{"item": item, "value": value, "details": note} for item, value, note in self.rows],
        }


class Report(BaseModel):
    """Every section of one look at the system, and where it looked."""

    where: str
    sections: list[Section]
    checked_at: float = Field(default_factory=time.time)

    @property
    def verdict(self) -> Verdict:
        if any(section.key == "redis" and section.error for section in self.sections):
            return Verdict.UNREACHABLE
        if all(section.healthy for section in self.sections):
            return Verdict.HEALTHY
        return Verdict.ATTENTION

    @property
    def attention(self) -> list[str]:
        """Titles of the sections that are not healthy, for one-line messages."""
        return [section.title for section in self.sections if not section.healthy]

    def as_json(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "status": self.verdict.name.lower(),
            "exit_code": int(self.verdict),
            "checked_at": datetime.fromtimestamp(self.checked_at, UTC).isoformat(),
            "where": self.where,
            "sections": [section.as_json() for section in self.sections],
        }


def wait_for_health(look: Callable[[], Report], wait: float, interval: float = 1.0) -> Report:
    """Look again every ``interval`` seconds until the report is healthy or ``wait`` seconds are up.

    At least one look is taken; the last one is returned (a stack that is still starting becomes
    healthy on a later look, a broken one keeps its last verdict).
    """
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        report = look()
        remaining = deadline - time.monotonic()
        if report.verdict is Verdict.HEALTHY or remaining <= 0:
            return report
        time.sleep(min(interval, remaining))


def _key(title: str) -> str:
    named = {"Bitrix24 rate limiter": "rate_limiter"}
    return named.get(title, title.lower().replace(" ", "_").replace("-", "_"))


def beat_lock_ttl(client: redis.Redis) -> int:
    """Milliseconds left on the RedBeat lock (0: no beat holds it), whatever the key prefix."""
    ttls = [int(client.pttl(key)) for key in client.scan_iter(match=REDBEAT_LOCK_PATTERN, count=500)]
    return max([0, *ttls])


def _guard(title: str, collect: Callable[[Section], None]) -> Section:
    section = Section(title=title, key=_key(title))
    try:
        collect(section)
    except Exception as exc:
        section.error = f"{type(exc).__name__}: {str(exc)[:200]}"
        section.healthy = False
    return section


def workers(settings: Settings, timeout: float) -> Section:
    def collect(section: Section) -> None:
        from tasks.runtime.health import celery_workers

        names = celery_workers(settings.redis_url, timeout=timeout)
        for name in names:
            section.rows.append((name, "online", "answered ping"))
        if not names:
            section.rows.append(("(none)", "offline", f"no worker answered within {timeout:g}s"))
            section.healthy = False

    return _guard("Workers", collect)


def queues(client: redis.Redis) -> Section:
    def collect(section: Section) -> None:
        for queue, depth in gauges.queue_depths(client).items():
            section.rows.append((queue, str(depth), "messages waiting"))
        section.rows.append(("unacked", str(client.hlen("unacked")), "delivered, not yet acknowledged"))
        oldest = inflight.oldest_age(client)
        section.rows.append(
            (
                "in flight",
                str(inflight.count(client)),
                "subscriber messages not yet posted, replies not yet delivered"
                + (f"; oldest {oldest:.0f}s" if oldest is not None else ""),
            )
        )

    return _guard("Queues", collect)


def ingest(client: redis.Redis) -> Section:
    def collect(section: Section) -> None:
        from tasks.ingest.metrics import read_statuses

        statuses = read_statuses(client)
        if not statuses:
            section.rows.append(("(none)", "not running", "no ingest status snapshot in Redis"))
            section.healthy = False
        for status in statuses:
            age = time.time() - float(status.get("heartbeat", 0))
            lag = sum(int(v) for v in (status.get("lag") or {}).values())
            partitions = len(status.get("assigned") or [])
            # Offsets wait for settled messages: what a restart of this process would read again.
            held = sum(int(v) for v in (status.get("held") or {}).values())
            state = "paused (backpressure)" if status.get("paused") else "consuming"
            if age > INGEST_STALE_SECONDS:
                state, section.healthy = f"stale ({age:.0f}s)", False
            section.rows.append(
                (
                    str(status.get("consumer", "?")),
                    f"lag {lag}",
                    f"{state}; consumed {status.get('consumed', 0)}, enqueued {status.get('enqueued', 0)}, "
                    f"dead letters {status.get('dead_letters', 0)}; partitions {partitions}; "
                    f"uncommitted {held} ({status.get('unsettled', 0)} not yet posted)",
                )
            )

    return _guard("Ingest", collect)


def dead_letters(client: redis.Redis, max_items: int = 100_000) -> Section:
    def collect(section: Section) -> None:
        from tasks.state.dead_letters import DeadLetterStore

        store = DeadLetterStore(client, max_items=max_items)
        count = store.count()
        section.rows.append(("stored", str(count), "rdb24 dlq list | show | replay"))
        if store.full():
            section.healthy = False
            section.rows.append(
                (
                    "store full",
                    f"{count}/{max_items}",
                    "messages are never dropped: replay or delete letters, or raise DEAD_LETTER_MAX",
                )
            )
        for letter in store.list(limit=3):
            section.rows.append((letter.id, letter.name, f"{letter.reason}: {letter.error}"[:100]))

    return _guard("Dead letters", collect)


def unreadable_in_flight(client: redis.Redis) -> Section:
    def collect(section: Section) -> None:
        count = inflight.unreadable_count(client)
        section.rows.append(("moved aside", str(count), "ledger entries the resend sweep could not read"))
        if count:
            section.healthy = False
            section.rows.append(("see", "rdb24 dlq list --name rdb24:inflight", "each is a dead letter"))

    return _guard("In-flight entries unreadable", collect)


def reconciliation(client: redis.Redis) -> Section:
    def collect(section: Section) -> None:
        from tasks.reconcile.report import LAST_REPORT_KEY

        lock = beat_lock_ttl(client)
        beat = "a scheduler holds the RedBeat lock" if lock > 0 else "no active scheduler (beat not running?)"
        section.rows.append(("beat", "active" if lock > 0 else "none", beat))
        raw = client.get(LAST_REPORT_KEY)
        if raw is None:
            section.rows.append(("last run", "none yet", "runs on RECONCILE_INTERVAL_SECONDS / _CRONTAB"))
            return
        report: dict[str, Any] = json.loads(raw)
        finished = report.get("finished_at") or report.get("started_at") or 0
        section.rows.append(
            (
                "last run",
                str(report.get("status", "?")),
                f"{time.time() - float(finished):.0f}s ago; created {report.get('created', 0)}, "
                f"updated {report.get('updated', 0)}, adopted {report.get('adopted', 0)}, "
                f"unchanged {report.get('unchanged', 0)}, failed {report.get('failed', 0)}; "
                f"{report.get('bitrix24_requests', 0)} Bitrix24 requests, "
                f"{float(report.get('duration_seconds', 0)):.1f}s",
            )
        )
        if report.get("status") == "failed":
            section.healthy = False

    return _guard("Reconciliation", collect)


def rate_limiter(client: redis.Redis, settings: Settings) -> Section:
    def collect(section: Section) -> None:
        levels = gauges.bucket_levels(client, settings.bitrix24_rate)
        for bucket, level in levels.items():
            wait = max(0.0, (level - settings.bitrix24_burst) / settings.bitrix24_rate)
            section.rows.append(
                (
                    bucket,
                    f"{level:.1f}/{settings.bitrix24_burst}",
                    f"next request waits {wait:.1f}s" if wait else f"free; {settings.bitrix24_rate:g} req/s",
                )
            )
        if not levels:
            section.rows.append(
                (
                    "bitrix24",
                    "idle",
                    f"no requests recently; {settings.bitrix24_rate:g} req/s, "
                    f"burst {settings.bitrix24_burst}",
                )
            )

    return _guard("Bitrix24 rate limiter", collect)


def collect_status(settings: Settings, ping_timeout: float = 1.0) -> list[Section]:
    client = redis_target.from_settings(settings).client(socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        down = Section(
            title="Redis",
            key="redis",
            error=f"{settings.redis_url.split('@')[-1]} unreachable: {exc}",
            healthy=False,
        )
        return [down]
    try:
        return [
            workers(settings, ping_timeout),
            queues(client),
            ingest(client),
            dead_letters(client, settings.dead_letter_max),
            unreadable_in_flight(client),
            reconciliation(client),
            rate_limiter(client, settings),
        ]
    finally:
        client.close()


def probe(role: str, settings: Settings) -> tuple[bool, str]:
    """Container health probes: is this role doing its job (not just "is the process up")."""
    import socket

    client = redis_target.from_settings(settings).client(socket_connect_timeout=2, socket_timeout=5)
    if role == "beat":
        held = beat_lock_ttl(client) > 0
        return held, "RedBeat lock held" if held else "no scheduler holds the RedBeat lock"
    if role == "ingest":
        from tasks.ingest.metrics import read_statuses

        host = socket.gethostname()
        fresh = [
            s
            for s in read_statuses(client)
            if str(s.get("consumer", "")).startswith(f"{host}-")
            and time.time() - float(s.get("heartbeat", 0)) < INGEST_STALE_SECONDS
        ]
        return bool(fresh), "ingest status fresh" if fresh else f"no fresh ingest status from {host}"
    raise ValueError(f"unknown probe role {role!r}; expected beat or ingest")
