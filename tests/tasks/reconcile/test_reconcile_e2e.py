"""Reconciliation end to end, inline (no Celery): RosDomofon and Bitrix24 simulators over HTTP, real Redis."""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis

from clients.bitrix24.client import Bitrix24Client
from clients.rosdomofon import RosDomofonAPI
from sandbox.bitrix24.server import Bitrix24Simulator
from sandbox.rosdomofon import RosDomofonSimulator
from schemas.phone import normalize_phone
from tasks.reconcile import mapping as m
from tasks.reconcile.engine import reconcile
from tasks.reconcile.plan import WriteKind
from tasks.reconcile.report import LAST_REPORT_KEY, RunStatus
from tasks.reconcile.run import run_reconciliation
from tests.tasks.reconcile.conftest import PortalView


def by_origin(contacts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    origins = Counter(c.get("ORIGIN_ID") for c in contacts if c.get("ORIGINATOR_ID") == "rosdomofon")
    assert all(n == 1 for n in origins.values()), f"duplicate contacts: {origins.most_common(3)}"
    return {c["ORIGIN_ID"]: c for c in contacts if c.get("ORIGINATOR_ID") == "rosdomofon"}


def run(api: RosDomofonAPI, client: Bitrix24Client, store: redis.Redis, **kw: Any):
    return run_reconciliation(api, client, store, lock_ttl=10, **kw)


def test_first_run_creates_every_contact_with_the_right_fields(
    rd_sim: RosDomofonSimulator, rd_api: RosDomofonAPI, b24_client: Bitrix24Client, store: redis.Redis, portal
) -> None:
    report = run(rd_api, b24_client, store).report
    accounts = rd_api.get_accounts()
    assert report.status == RunStatus.OK
    assert report.created == len(accounts) == 30 and report.failed == 0
    contacts = by_origin(portal.contacts())
    assert set(contacts) == {str(a.id) for a in accounts}
    for account in accounts:
        contact = contacts[str(account.id)]
        phone = normalize_phone(account.owner.phone)
        assert [r["VALUE"] for r in contact["PHONE"]] == [phone]
        assert contact[m.F_ACCOUNT_NUMBER] == account.number
        assert contact[m.F_BLOCKED] == ("Y" if account.blocked else "N")
        assert contact[m.F_COMPANY] == account.company.short_name
        services = [c for c in rd_sim.world.connections.values() if c.account_id == account.id]
        assert len(contact[m.F_SERVICES].splitlines()) == len(services)
    # writes were batched: 30 creates in one request, and the report is kept for `rdb24 status`
    calls = portal.calls()
    assert calls["inner_counts"]["crm.contact.add"] == 30
    assert calls["counts"].get("crm.contact.add", 0) == 0
    assert report.bitrix24_requests == calls["requests"]
    assert store.get(LAST_REPORT_KEY) is not None


def test_unchanged_second_run_makes_no_bitrix24_request(
    rd_api: RosDomofonAPI, b24_client: Bitrix24Client, store: redis.Redis, portal: PortalView
) -> None:
    run(rd_api, b24_client, store)
    before = portal.calls()["requests"]
    report = run(rd_api, b24_client, store).report
    assert report.unchanged == 30 and report.created == report.updated == 0
    assert report.bitrix24_requests == 0
    assert portal.calls()["requests"] == before


def test_blocking_an_account_and_connecting_a_service_updates_exactly_that_contact(
    rd_sim: RosDomofonSimulator,
    rd_api: RosDomofonAPI,
    b24_client: Bitrix24Client,
    store: redis.Redis,
    portal: PortalView,
) -> None:
    run(rd_api, b24_client, store)
    account = next(a for a in rd_api.get_accounts() if not a.blocked)
    rd_api.block_account(account.number)
    flat = next(f for f in rd_sim.world.flats.values() if f.account_id == account.id)
    have = {c.service_id for c in rd_sim.world.connections.values() if c.account_id == account.id}
    service = next(s for s in rd_sim.world.services.values() if s.id not in have)
    rd_api.connect_service(service.id, flat.id, account.id)
    before = by_origin(portal.contacts())
    writes_before = len(portal.writes())

    outcome = run(rd_api, b24_client, store)

    assert outcome.report.updated == 1 and outcome.report.unchanged == 29
    (write,) = outcome.plan.writes
    assert write.contact_id == int(before[str(account.id)]["ID"])
    assert {m.F_BLOCKED, m.F_BLOCK_REASON, m.F_SERVICES} <= set(write.fields)
    assert set(write.fields) <= {m.F_BLOCKED, m.F_BLOCK_REASON, m.F_SERVICES, m.F_SERVICES_ACTIVE}
    assert [w["method"] for w in portal.writes()[writes_before:]] == ["crm.contact.update"]
    after = by_origin(portal.contacts())
    changed = after[str(account.id)]
    assert changed[m.F_BLOCKED] == "Y" and changed[m.F_BLOCK_REASON]
    assert f"#{service.id}]" in changed[m.F_SERVICES]
    assert changed["PHONE"] == before[str(account.id)]["PHONE"]  # no phone row re-added
    assert all(after[k] == before[k] for k in after if k != str(account.id))


def test_contacts_with_the_same_phone_in_another_format_are_adopted(
    rd_api: RosDomofonAPI, b24_client: Bitrix24Client, store: redis.Redis, portal: PortalView
) -> None:
    first, second = rd_api.get_accounts()[:2]
    p1, p2 = normalize_phone(first.owner.phone), normalize_phone(second.owner.phone)
    existing = {
        b24_client.call(
            "crm.contact.add",
            {
                "fields": {
                    "NAME": "Мария",
                    "PHONE": [{"VALUE": f"+7 ({p1[1:4]}) {p1[4:7]}-{p1[7:9]}-{p1[9:]}"}],
                }
            },
        ),
        b24_client.call("crm.contact.add", {"fields": {"NAME": "Пётр", "PHONE": [{"VALUE": "8" + p2[1:]}]}}),
    }

    report = run(rd_api, b24_client, store).report

    assert report.adopted == 2 and report.created == 28
    contacts = portal.contacts()
    assert len(contacts) == 30  # nobody duplicated
    ours = by_origin(contacts)
    assert {int(ours[str(first.id)]["ID"]), int(ours[str(second.id)]["ID"])} == {int(i) for i in existing}
    assert ours[str(first.id)]["NAME"] == "Мария"  # not ours to change
    assert len(ours[str(first.id)]["PHONE"]) == 1  # the number was already there in another format
    assert ours[str(second.id)][m.F_ACCOUNT_NUMBER] == second.number


def test_dry_run_plans_without_writing(
    rd_api: RosDomofonAPI, b24_client: Bitrix24Client, store: redis.Redis, portal: PortalView
) -> None:
    outcome = run(rd_api, b24_client, store, dry_run=True)
    assert outcome.report.status == RunStatus.DRY_RUN
    assert len(outcome.plan.of_kind(WriteKind.CREATE)) == 30
    assert portal.contacts() == [] and portal.writes() == []
    assert store.get(LAST_REPORT_KEY) is None


class FaultBeforeFirstWrite:
    """The real client, but a fault is injected into the simulator just before the first write batch."""

    def __init__(self, client: Bitrix24Client, sim: Bitrix24Simulator, kind: str, **fault: Any) -> None:
        self.client, self.sim, self.kind, self.fault, self.armed = client, sim, kind, fault, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def batch(self, commands: Any, halt: bool = False) -> Any:
        if self.armed and any(cmd[0] == "crm.contact.add" for cmd in dict(commands).values()):
            self.armed = False
            self.sim.inject(self.kind, method="batch", **self.fault)
        return self.client.batch(commands, halt)


def test_ambiguous_write_batch_is_rechecked_not_resent(
    rd_api: RosDomofonAPI,
    b24_sim: Bitrix24Simulator,
    b24_client: Bitrix24Client,
    store: redis.Redis,
    portal: PortalView,
) -> None:
    # The create batch commits, then the answer comes too late: the client sees an ambiguous write.
    client = FaultBeforeFirstWrite(b24_client, b24_sim, "commit_then_timeout", count=1, seconds=3.0)
    outcome = reconcile(rd_api, client, store, sleep=lambda s: None)
    assert not client.armed  # the fault did fire on the create batch
    assert outcome.report.created == 30 and outcome.report.failed == 0
    assert len(by_origin(portal.contacts())) == 30
    assert Counter(c["method"] for c in portal.writes())["crm.contact.add"] == 30  # never re-sent


def test_write_batch_refused_by_the_rate_limit_is_sent_again(
    rd_api: RosDomofonAPI,
    b24_sim: Bitrix24Simulator,
    b24_client: Bitrix24Client,
    store: redis.Redis,
    portal: PortalView,
) -> None:
    # More refusals than the client's own rate-limit retries: the batch error reaches the applier.
    refusals = b24_client.rate_limit_retries + 1
    fault = {
        "status": 503,
        "code": "QUERY_LIMIT_EXCEEDED",
        "description": "Too many requests",
        "count": refusals,
    }
    client = FaultBeforeFirstWrite(b24_client, b24_sim, "error", **fault)
    outcome = reconcile(rd_api, client, store, sleep=lambda s: None)
    assert outcome.report.created == 30 and outcome.report.failed == 0
    assert outcome.report.bitrix24_rate_limited == refusals
    assert len(by_origin(portal.contacts())) == 30


def test_full_run_rechecks_everything_and_repairs_an_edited_field(
    rd_api: RosDomofonAPI, b24_client: Bitrix24Client, store: redis.Redis, portal: PortalView
) -> None:
    run(rd_api, b24_client, store)
    victim = by_origin(portal.contacts())[str(rd_api.get_accounts()[3].id)]
    b24_client.call("crm.contact.update", {"id": victim["ID"], "fields": {m.F_COMPANY: "edited"}})
    assert run(rd_api, b24_client, store).report.updated == 0  # fingerprints say nothing changed
    report = run(rd_api, b24_client, store, full=True).report
    assert report.updated == 1 and report.unchanged == 29 and report.read_pattern.startswith("scan")
    assert by_origin(portal.contacts())[victim["ORIGIN_ID"]][m.F_COMPANY] != "edited"


def test_a_second_run_while_one_holds_the_lock_is_skipped(
    rd_api: RosDomofonAPI, b24_client: Bitrix24Client, store: redis.Redis, portal: PortalView
) -> None:
    from tasks.reconcile.lock import RunLock

    holder = RunLock(store, ttl=10)
    assert holder.acquire()
    try:
        report = run(rd_api, b24_client, store).report
    finally:
        holder.release()
    assert report.status == RunStatus.SKIPPED
    assert portal.writes() == []


def test_many_homeless_accounts_on_a_small_portal_are_matched_by_scanning_it(
    monkeypatch, rd_api: RosDomofonAPI, b24_client: Bitrix24Client, store: redis.Redis, portal: PortalView
) -> None:
    from tasks.reconcile import portal as portal_module

    monkeypatch.setattr(portal_module, "PHONES_PER_FINDBYCOMM_REQUEST", 5)  # findbycomm now looks dear
    account = rd_api.get_accounts()[7]
    phone = normalize_phone(account.owner.phone)
    b24_client.call("crm.contact.add", {"fields": {"NAME": "Old", "PHONE": [{"VALUE": "8" + phone[1:]}]}})

    report = run(rd_api, b24_client, store).report

    assert report.read_pattern.endswith("+scan-all")
    assert report.adopted == 1 and report.created == 29
    assert "crm.duplicate.findbycomm" not in portal.calls()["inner_counts"]
    assert by_origin(portal.contacts())[str(account.id)]["NAME"] == "Old"


def test_a_run_whose_lock_was_taken_stops_before_writing_more(
    rd_api: RosDomofonAPI, b24_client: Bitrix24Client, store: redis.Redis, portal: PortalView
) -> None:
    """The run was stopped past its lock's TTL and another run took it: this one writes nothing more."""
    import pytest

    from tasks.errors import LeaseLostError
    from tasks.reconcile.lock import RunLock

    key = f"{LAST_REPORT_KEY}:test-lock"
    lock = RunLock(store, ttl=10, key=key)
    assert lock.acquire()
    try:
        store.set(key, "the-next-run")  # our lease lapsed and the next run holds the lock now
        with pytest.raises(LeaseLostError):
            reconcile(rd_api, b24_client, store, fence=lock.ensure_held)
    finally:
        lock.release()
        store.delete(key)
    assert portal.writes() == []
