"""The ``reconcile.run`` task (queue ``reconcile``), scheduled by beat (``tasks/runtime/schedule.py``).

Never two at once: the run takes :class:`~tasks.reconcile.lock.RunLock`; a run that finds it held
reports ``skipped`` and returns (the next beat tick will try again). Crash-safe: a run killed
halfway left fingerprints only for contacts it confirmed, every create carries
``ORIGIN_ID=<account id>`` and the next run reads contacts back by ORIGIN_ID before writing, so it
resumes without duplicates (Celery's late ack also redelivers the killed run itself).
"""

from __future__ import annotations

from typing import Any

import redis
from pydantic import BaseModel, Field

from clients.bitrix24 import background_requests
from tasks.reconcile.engine import Outcome, new_report, reconcile
from tasks.reconcile.lock import RunLock
from tasks.reconcile.plan import Plan
from tasks.reconcile.report import RunReport, RunStatus, publish
from tasks.reconcile.sources import RosDomofonReader
from tasks.runtime.operation import operation
from tasks.runtime.queues import Queue


class ReconcileRequest(BaseModel):
    """Payload of ``reconcile.run``."""

    full: bool = Field(default=False, description="ignore fingerprints: re-check every account")
    dry_run: bool = Field(default=False, description="plan only, write nothing")


def run_reconciliation(
    rosdomofon: RosDomofonReader,
    bitrix24: Any,
    store: redis.Redis,
    *,
    full: bool = False,
    dry_run: bool = False,
    lock_ttl: float = 60.0,
    read_concurrency: int = 8,
) -> Outcome:
    """Reconcile under the run lock and publish the report (also when the run fails)."""
    report = new_report(full=full, dry_run=dry_run)
    if dry_run:  # reads only: no lock needed, nothing to protect
        outcome = reconcile(
            rosdomofon,
            bitrix24,
            store,
            full=full,
            dry_run=True,
            report=report,
            read_concurrency=read_concurrency,
        )
        publish(outcome.report, store)
        return outcome
    lock = RunLock(store, ttl=lock_ttl)
    if not lock.acquire():
        report.status = RunStatus.SKIPPED
        report.error = "another reconciliation holds the run lock"
        publish(report, store)
        return Outcome(report=report, plan=Plan())
    try:
        outcome = reconcile(
            rosdomofon, bitrix24, store, full=full, report=report, read_concurrency=read_concurrency
        )
    except Exception:
        publish(report, store)
        raise
    finally:
        lock.release()
    publish(outcome.report, store)
    return outcome


@operation("reconcile.run", queue=Queue.RECONCILE, payload=ReconcileRequest, result=RunReport)
def run(payload: ReconcileRequest) -> RunReport:
    """Reconcile RosDomofon accounts and connections into Bitrix24 contacts."""
    from tasks.runtime import resources as clients
    from tasks.settings import get_settings

    settings = get_settings()
    # Live messages first: reconciliation fills at most RECONCILE_RATE_SHARE of the portal's bucket.
    with background_requests(settings.reconcile_rate_share):
        outcome = run_reconciliation(
            clients.rosdomofon_api(),
            clients.bitrix24_client(),
            clients.redis_client(),
            full=payload.full,
            dry_run=payload.dry_run,
            lock_ttl=settings.reconcile_lock_ttl,
            read_concurrency=settings.reconcile_read_concurrency,
        )
    return outcome.report


__all__ = ["ReconcileRequest", "run", "run_reconciliation"]
