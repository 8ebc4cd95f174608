"""Reconciliation and the message flow create contacts through one gate: an owner who writes during a
run gets one contact, whichever side reaches the portal first (inline reconcile, real Redis, the
Bitrix24 simulator over HTTP; the flow's ``ensure_contact`` runs as a worker would run it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from clients.bitrix24.client import Bitrix24Client
from clients.rosdomofon import RosDomofonAPI
from schemas.flows import AccountRef
from schemas.phone import normalize_phone
from tasks.flows.contact import CACHE_PREFIX, cache_key, contact_fields, ensure_contact
from tasks.reconcile.engine import reconcile
from tasks.reconcile.report import RunStatus
from tests.tasks.reconcile.conftest import PortalView


@pytest.fixture(autouse=True)
def no_cached_contacts(store: redis.Redis) -> Iterator[None]:
    """Each test has a fresh portal: contact ids the flow cached for an earlier one are void."""

    def clear() -> None:
        for key in store.scan_iter(f"{CACHE_PREFIX}:*"):
            store.delete(key)

    clear()
    yield
    clear()


def contacts_of(portal: PortalView, phone: str) -> list[dict[str, Any]]:
    def holds(contact: dict[str, Any]) -> bool:
        return any(normalize_phone(row["VALUE"]) == phone for row in contact.get("PHONE") or [])

    return [c for c in portal.contacts() if holds(c)]


class OwnerWrites:
    """The real client; when reconciliation sends the batch ``method`` is in, the owner writes.

    ``during``: the flow starts just before the batch goes (in a thread, as another worker) and is
    given a head start; otherwise the flow runs to its end right after the batch came back.
    """

    def __init__(self, client: Bitrix24Client, cache: redis.Redis, phone: str, method: str, *, during: bool):
        self.client, self.cache, self.phone, self.method, self.during = client, cache, phone, method, during
        self.armed = True
        self.flow_result: list[tuple[int, bool]] = []
        self.flow: threading.Thread | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def _owner_writes(self) -> None:
        fields = contact_fields(self.phone, None, 4242)  # the index does not know the account yet
        self.flow_result.append(ensure_contact(self.client, self.cache, self.phone, fields))

    def batch(self, commands: Any, halt: bool = False) -> Any:
        hit = self.armed and any(cmd[0] == self.method for cmd in dict(commands).values())
        if hit and self.during:
            self.armed = False
            self.flow = threading.Thread(target=self._owner_writes)
            self.flow.start()
            time.sleep(0.5)  # time enough to create a contact, if nothing stops it
        answer = self.client.batch(commands, halt)
        if hit and not self.during:
            self.armed = False
            self._owner_writes()
        return answer


def _new_owner_phone(rd_api: RosDomofonAPI) -> str:
    return normalize_phone(rd_api.get_accounts()[0].owner.phone)


def test_owner_writing_while_reconcile_creates_gets_the_reconciled_contact(
    rd_api: RosDomofonAPI, b24_client: Bitrix24Client, store: redis.Redis, portal: PortalView
) -> None:
    phone = _new_owner_phone(rd_api)
    store.delete(cache_key(phone))
    client = OwnerWrites(b24_client, store, phone, "crm.contact.add", during=True)
    outcome = reconcile(rd_api, client, store, sleep=lambda s: None)
    assert client.flow is not None
    client.flow.join(timeout=60)
    assert outcome.report.status == RunStatus.OK and outcome.report.created == 30
    found = contacts_of(portal, phone)
    assert len(found) == 1, f"{len(found)} contacts for one owner: {[c['ID'] for c in found]}"
    assert client.flow_result == [(int(found[0]["ID"]), False)]  # the flow found reconcile's contact


def test_contact_made_by_a_message_after_reconcile_read_the_portal_is_adopted_not_doubled(
    rd_api: RosDomofonAPI, b24_client: Bitrix24Client, store: redis.Redis, portal: PortalView
) -> None:
    phone = _new_owner_phone(rd_api)
    store.delete(cache_key(phone))
    # The owner's message makes a contact right after reconcile looked for contacts to adopt.
    client = OwnerWrites(b24_client, store, phone, "crm.duplicate.findbycomm", during=False)
    outcome = reconcile(rd_api, client, store, sleep=lambda s: None)
    assert not client.armed
    assert outcome.report.status == RunStatus.OK
    assert outcome.report.created == 29 and outcome.report.adopted == 1
    found = contacts_of(portal, phone)
    assert len(found) == 1, f"{len(found)} contacts for one owner: {[c['ID'] for c in found]}"
    flow_contact, created = client.flow_result[0]
    assert created and int(found[0]["ID"]) == flow_contact
    assert found[0]["ORIGINATOR_ID"] == "rosdomofon"  # adopted: reconcile's fields on the flow's contact


def test_flow_finds_a_contact_typed_with_8_and_brackets(
    b24_client: Bitrix24Client, store: redis.Redis, portal: PortalView
) -> None:
    phone = "79131234567"
    store.delete(cache_key(phone))
    typed = b24_client.call(
        "crm.contact.add", {"fields": {"NAME": "Оператор ввёл", "PHONE": [{"VALUE": "8 (913) 123-45-67"}]}}
    )
    account = AccountRef(account_id=77, abonent_id=78, phone=phone, number="0077")
    contact_id, created = ensure_contact(b24_client, store, phone, contact_fields(phone, account, 78))
    assert (contact_id, created) == (int(typed), False)
    assert len(portal.contacts()) == 1
