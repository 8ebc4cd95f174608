"""Scenario 13i: reconciliation runs while account owners write their first messages.

Both sides want a contact for the same new phones at the same moment, and three owners already have a
contact an operator typed by hand in another spelling (``8 (913) …``, ``+7 913 …``, ten digits). Each
owner must end with exactly one contact: the flow finds contacts in every spelling, and
reconciliation creates through the flow's per-phone locks.
"""

from __future__ import annotations

import threading

import requests

from tests.faults.conftest import StackFactory
from tests.faults.scenario import finish, now


def spelled(phone: str, style: int) -> str:
    digits = phone[1:]
    return [
        f"8 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}",
        f"+7 {digits[:3]} {digits[3:6]} {digits[6:]}",
        digits,
    ][style]


def test_reconcile_during_first_messages_leaves_one_contact_per_owner(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    assert stack.sims is not None
    bitrix24 = stack.sims.bitrix24
    owners = stack.subscribers(30)
    for style, (_abonent, phone) in enumerate(owners[:3]):
        answer = requests.post(
            f"{bitrix24.webhook_url}crm.contact.add",
            json={"fields": {"NAME": "Введён оператором", "PHONE": [{"VALUE": spelled(phone, style)}]}},
            timeout=10,
        )
        answer.raise_for_status()
    stack.worker("worker1", concurrency=3)
    stack.ingest()

    outcome: dict[str, object] = {}
    reconcile = threading.Thread(
        target=lambda: outcome.setdefault("run", stack.cli("reconcile", "--inline", timeout=180))
    )
    reconcile.start()
    stack.send(len(owners), owners, "первое сообщение")
    reconcile.join(timeout=200)
    run = outcome["run"]
    assert getattr(run, "returncode", 1) == 0, getattr(run, "stdout", "") + getattr(run, "stderr", "")

    finish(stack, "13i reconcile during first messages", fault_ended_at=now(), deliver_timeout=120)
    every_owner = stack.contacts_for(phone for _abonent, phone in owners)
    assert every_owner.exact, every_owner.describe("contacts per account owner")
