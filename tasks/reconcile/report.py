"""The run report: what a reconciliation did and what it cost, logged, kept in Redis, counted.

Redis keys (read by ``rdb24 status`` and ``rdb24 reconcile``):

* ``rdb24:reconcile:last_report``: JSON of the latest finished run's :class:`RunReport`;
* ``rdb24:reconcile:reports``: a list of the last ``HISTORY`` reports, newest first.

Prometheus counters (through :mod:`tasks.runtime.metrics`, so every process exports the same totals):
``rdb24_reconcile_runs_total{status}``, ``rdb24_reconcile_contacts_total{outcome}``,
``rdb24_reconcile_requests_total{service}``, ``rdb24_reconcile_duration_seconds_total``.
"""

from __future__ import annotations

from enum import StrEnum

import redis
from loguru import logger
from pydantic import BaseModel, Field

from tasks.runtime import metrics
from tasks.state import keys

LAST_REPORT_KEY = keys.RECONCILE_LAST_REPORT
HISTORY_KEY = keys.RECONCILE_REPORTS
HISTORY = 20
FAILURES_KEPT = 50

RUNS = metrics.RedisCounter("rdb24_reconcile_runs_total", "Reconciliation runs by final status", ("status",))
CONTACTS = metrics.RedisCounter(
    "rdb24_reconcile_contacts_total", "Contacts handled by reconciliation, by outcome", ("outcome",)
)
REQUESTS = metrics.RedisCounter(
    "rdb24_reconcile_requests_total", "HTTP requests made by reconciliation, by service", ("service",)
)
DURATION = metrics.RedisCounter("rdb24_reconcile_duration_seconds_total", "Seconds spent reconciling")


class RunStatus(StrEnum):
    OK = "ok"  # every account reconciled
    PARTIAL = "partial"  # some contacts failed (see failures)
    FAILED = "failed"  # the run stopped (an error it cannot work around)
    SKIPPED = "skipped"  # another reconciliation held the run lock
    DRY_RUN = "dry_run"  # planned only, nothing written


class Failure(BaseModel):
    account_id: int
    kind: str
    error: str


class RunReport(BaseModel):
    """Counts are contacts; ``bitrix24_requests`` are HTTP requests (a batch of 50 counts once)."""

    run_id: str
    status: RunStatus = RunStatus.OK
    full: bool = False
    dry_run: bool = False
    started_at: float
    finished_at: float | None = None
    duration_seconds: float = 0.0
    accounts: int = 0
    checked: int = 0  # accounts whose fingerprint changed (or all with --full)
    created: int = 0
    updated: int = 0
    adopted: int = 0
    unchanged: int = 0
    failed: int = 0
    duplicates: int = 0  # ORIGIN_IDs held by more than one contact (reported, never deleted)
    bitrix24_requests: int = 0
    bitrix24_rate_limited: int = 0
    rosdomofon_requests: int = 0
    rosdomofon_seconds: float = 0.0  # time spent reading RosDomofon (before any Bitrix24 write)
    read_pattern: str = ""
    failures: list[Failure] = Field(default_factory=list)
    error: str | None = None

    def add_failure(self, account_id: int, kind: str, error: str) -> None:
        self.failed += 1
        if len(self.failures) < FAILURES_KEPT:
            self.failures.append(Failure(account_id=account_id, kind=kind, error=error[:300]))

    def summary(self) -> str:
        return (
            f"reconcile {self.run_id} {self.status.value}: {self.accounts} accounts, checked {self.checked}, "
            f"created {self.created}, updated {self.updated}, adopted {self.adopted}, "
            f"unchanged {self.unchanged}, failed {self.failed}; bitrix24 {self.bitrix24_requests} requests "
            f"({self.bitrix24_rate_limited} rate-limited), rosdomofon {self.rosdomofon_requests}, "
            f"{self.duration_seconds:.1f}s"
        )


def publish(report: RunReport, store: redis.Redis) -> None:
    """Log the report, keep it for ``rdb24 status`` and add it to the metrics (dry runs: log only)."""
    log = logger.error if report.status == RunStatus.FAILED else logger.info
    log(report.summary())
    if report.dry_run:
        return
    body = report.model_dump_json()
    pipe = store.pipeline()
    pipe.set(LAST_REPORT_KEY, body)
    pipe.lpush(HISTORY_KEY, body)
    pipe.ltrim(HISTORY_KEY, 0, HISTORY - 1)
    pipe.execute()
    RUNS.inc(status=report.status.value)
    if report.status == RunStatus.SKIPPED:
        return
    for outcome in ("created", "updated", "adopted", "unchanged", "failed"):
        amount = getattr(report, outcome)
        if amount:
            CONTACTS.inc(amount, outcome=outcome)
    if report.bitrix24_requests:
        REQUESTS.inc(report.bitrix24_requests, service="bitrix24")
    if report.rosdomofon_requests:
        REQUESTS.inc(report.rosdomofon_requests, service="rosdomofon")
    DURATION.inc(report.duration_seconds)


def last_report(store: redis.Redis) -> RunReport | None:
    raw = store.get(LAST_REPORT_KEY)
    return RunReport.model_validate_json(raw) if raw else None


__all__ = ["HISTORY_KEY", "LAST_REPORT_KEY", "Failure", "RunReport", "RunStatus", "last_report", "publish"]
