"""One reconciliation, start to finish, without Celery (the task, the CLI and the bench call it).

Order of work and what it costs:

1. RosDomofon: accounts and connections (``sources``), then the phone -> account index refresh.
2. Userfields ensured (once per spec set, remembered in Redis).
3. Desired contact and fingerprint per account; accounts whose fingerprint matches the stored one
   are done: an unchanged run makes no Bitrix24 request at all.
4. The Bitrix24 side of the changed accounts only: the ID-window scan of our contacts when that is
   cheapest (first run, lost Redis, ``--full``), else targeted ``@ID``/``@ORIGIN_ID`` reads
   (2,500 contacts per request); then ``findbycomm`` for accounts with no contact of ours.
5. Plan, then (unless a dry run) apply in batches, storing fingerprints as writes are confirmed.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from loguru import logger

from tasks.flows.contact import PhoneGate
from tasks.reconcile.apply import Applier
from tasks.reconcile.fields import ensure_fields
from tasks.reconcile.fingerprint import FingerprintStore, Stored, fingerprint
from tasks.reconcile.mapping import DesiredContact, desired_contact
from tasks.reconcile.plan import ObservedContact, Plan, WriteKind, build_plan, pick_ours
from tasks.reconcile.portal import IN_FILTER_SIZE, PortalReader
from tasks.reconcile.report import RunReport, RunStatus
from tasks.reconcile.sources import DEFAULT_CONCURRENCY, RosDomofonReader, read_snapshot

PAGE = 50
PER_TARGETED_REQUEST = IN_FILTER_SIZE * 50  # 50 values per command, 50 commands per batch


@dataclass
class Outcome:
    report: RunReport
    plan: Plan


def new_report(*, full: bool = False, dry_run: bool = False) -> RunReport:
    return RunReport(run_id=uuid.uuid4().hex[:12], full=full, dry_run=dry_run, started_at=time.time())


def _requests(client: Any) -> tuple[int, int]:
    stats = getattr(client, "stats", None)
    return (getattr(stats, "requests", 0), getattr(stats, "rate_limited", 0)) if stats else (0, 0)


def read_ours(
    reader: PortalReader, dirty: Iterable[DesiredContact], stored: Mapping[int, Stored], *, full: bool
) -> tuple[list[ObservedContact], str]:
    """Our contacts for the ``dirty`` accounts, by the cheaper of the scan and targeted reads."""
    dirty = list(dirty)
    known = {d.account_id: stored[d.account_id].contact_id for d in dirty if d.account_id in stored}
    unknown = [d.account_id for d in dirty if d.account_id not in stored]
    scan_cost = len(stored) // PAGE + 1
    targeted_cost = math.ceil(len(known) / PER_TARGETED_REQUEST) + math.ceil(
        len(unknown) / PER_TARGETED_REQUEST
    )
    if full or scan_cost <= targeted_cost:
        return reader.scan_ours(), "scan"
    found = reader.by_ids(known.values())
    origins = {c.origin_id for c in found if c.ours}
    lost = [a for a in known if str(a) not in origins]  # stored id no longer ours: look it up by origin
    found.extend(reader.by_origin_ids(unknown + lost))
    return found, "targeted"


def reconcile(
    rosdomofon: RosDomofonReader,
    bitrix24: Any,
    store: redis.Redis,
    *,
    full: bool = False,
    dry_run: bool = False,
    refresh_index: bool = True,
    sleep: Any = time.sleep,
    report: RunReport | None = None,
    read_concurrency: int = DEFAULT_CONCURRENCY,
    fence: Callable[[], None] = lambda: None,
) -> Outcome:
    """Run one reconciliation (the caller holds the run lock) and return its report and plan.

    Pass ``report`` to keep hold of it when the run raises: it is then marked failed with the error.
    ``fence`` is called before every write and raises when the run lock is no longer ours.
    """
    report = report or new_report(full=full, dry_run=dry_run)
    requests0, limited0 = _requests(bitrix24)
    plan = Plan()
    try:
        snapshot = read_snapshot(rosdomofon, concurrency=read_concurrency)
        report.rosdomofon_requests = snapshot.requests
        report.rosdomofon_seconds = round(time.time() - report.started_at, 3)
        report.accounts = len(snapshot.accounts)
        if refresh_index and not dry_run:
            from tasks.state.accounts_index import refresh_accounts_index

            fence()
            refresh_accounts_index(snapshot.accounts, store)
        if not dry_run:
            fence()
            ensure_fields(bitrix24, store)
        desired = {a.id: desired_contact(a, snapshot.connections_of(a.id)) for a in snapshot.accounts}
        digests = {a: fingerprint(d) for a, d in desired.items()}
        fingerprints = FingerprintStore(store)
        stored = fingerprints.load()
        dirty = [d for a, d in desired.items() if full or a not in stored or stored[a].digest != digests[a]]
        report.checked = len(dirty)
        report.unchanged = len(desired) - len(dirty)
        if dirty:
            reader = PortalReader(bitrix24)
            ours, report.read_pattern = read_ours(reader, dirty, stored, full=full)
            by_origin, _ = pick_ours(ours)
            homeless = {d.account_id: d.phone for d in dirty if d.origin_id not in by_origin and d.phone}
            adoptable, adoption_lookup = reader.adoption_candidates(homeless)
            report.read_pattern += f"+{adoption_lookup}"
            plan = build_plan(dirty, ours, adoptable)
            report.duplicates = len(plan.duplicates)
            if plan.duplicates:
                logger.warning("reconcile: ORIGIN_IDs held by several contacts: {}", plan.duplicates)
        report.unchanged += len(plan.unchanged)
        if dry_run:
            report.created = len(plan.of_kind(WriteKind.CREATE))
            report.updated = len(plan.of_kind(WriteKind.UPDATE))
            report.adopted = len(plan.of_kind(WriteKind.ADOPT))
            report.status = RunStatus.DRY_RUN
        else:
            fence()
            fingerprints.save({a: Stored(cid, digests[a]) for a, cid in plan.unchanged.items()})
            gate = PhoneGate(store)  # the message flow's per-phone locks and contact cache
            applier = Applier(
                bitrix24,
                PortalReader(bitrix24),
                fingerprints,
                report,
                desired,
                digests,
                sleep=sleep,
                gate=gate,
                fence=fence,
            )
            applier.apply(plan.writes)
            fence()
            fingerprints.forget(set(stored) - set(desired))
            report.status = RunStatus.PARTIAL if report.failed else RunStatus.OK
    except Exception as exc:
        report.status = RunStatus.FAILED
        report.error = f"{type(exc).__name__}: {exc}"[:500]
        raise
    finally:
        requests1, limited1 = _requests(bitrix24)
        report.bitrix24_requests = requests1 - requests0
        report.bitrix24_rate_limited = limited1 - limited0
        report.finished_at = time.time()
        report.duration_seconds = round(report.finished_at - report.started_at, 3)
    return Outcome(report=report, plan=plan)


__all__ = ["Outcome", "new_report", "read_ours", "reconcile"]
