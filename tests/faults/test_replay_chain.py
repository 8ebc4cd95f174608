"""Scenario 13h: outages that outlast the retry budget, then ``rdb24 dlq replay --all``.

RosDomofon is down while four messages arrive (their lookups are dead-lettered), then Bitrix24 cannot
look contacts up while four more arrive (their contact steps are dead-lettered). After both recover,
one replay of every letter must post all eight, once each, and leave the in-flight ledger empty: a
replayed step runs the rest of its chain.
"""

from __future__ import annotations

from tests.faults.conftest import StackFactory
from tests.faults.harness import StackOptions
from tests.faults.scenario import finish, now

PER_OUTAGE = 4


def test_replaying_dead_lettered_chain_steps_posts_every_message(stack_factory: StackFactory) -> None:
    # Two retries only, and every lookup asks RosDomofon (the index refreshes on every miss).
    stack = stack_factory(StackOptions(env={"MAX_RETRIES": "2", "ACCOUNTS_INDEX_MIN_REFRESH": "0"}))
    assert stack.sims is not None
    rosdomofon, bitrix24 = stack.sims.rosdomofon, stack.sims.bitrix24
    subscribers = stack.sims.add_subscribers_without_account(PER_OUTAGE * 2)
    stack.worker("worker1", concurrency=3)
    stack.ingest()

    rosdomofon.faults.update(fail_next=100_000, fail_status=503)
    stack.send(PER_OUTAGE, subscribers[:PER_OUTAGE], "во время сбоя РосДомофона")
    stack.wait_until(lambda: len(stack.dead_letters()) == PER_OUTAGE, 90, "lookups dead-lettered")
    rosdomofon.faults.clear()

    bitrix24.inject("error", method="crm.duplicate.findbycomm", status=503, code="")
    stack.send(PER_OUTAGE, subscribers[PER_OUTAGE:], "во время сбоя Битрикс24")
    stack.wait_until(lambda: len(stack.dead_letters()) == 2 * PER_OUTAGE, 90, "contact steps dead-lettered")
    bitrix24.faults.clear()
    stack.wait_settled()
    names = sorted(letter.name for letter in stack.dead_letters())
    assert names == ["bitrix24.find_or_create_contact"] * PER_OUTAGE + ["flows.lookup_account"] * PER_OUTAGE
    assert len(stack.posts().lost) == 2 * PER_OUTAGE  # nothing posted yet

    replayed = stack.cli("dlq", "replay", "--all")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    finish(stack, "13h dlq replay of lookup/contact steps", fault_ended_at=now(), deliver_timeout=120)
