"""Scenario 9: two beat processes (RedBeat), the active one killed: reconciliation still runs once
per period.

Only the lock holder sends ``reconcile.run``; after ``kill -9`` of it the standby takes the lock
within ``REDBEAT_LOCK_TIMEOUT`` and the period goes on. Runs are read from the reconciliation's own
history in Redis: none skipped (which would mean two were due at once), none closer together than
the period allows, no gap longer than the period plus the lock timeout. Every account owner ends
with exactly one contact.
"""

from __future__ import annotations

import itertools
import json
import time

from tests.faults import report, tally
from tests.faults.conftest import StackFactory
from tests.faults.harness import Stack, StackOptions
from tests.faults.procs import ManagedProcess

PERIOD = 4.0
LOCK_TIMEOUT = 6
HISTORY_KEY = "rdb24:reconcile:reports"
SENDING = "Sending due task"


def runs(stack: Stack) -> list[dict[str, object]]:
    """Finished reconciliation runs, oldest first."""
    return [json.loads(raw) for raw in reversed(stack.redis().lrange(HISTORY_KEY, 0, -1))]


def active_beat(beats: list[ManagedProcess]) -> ManagedProcess:
    senders = [b for b in beats if SENDING in b.output()]
    assert len(senders) == 1, f"expected exactly one beat sending tasks, got {[b.name for b in senders]}"
    return senders[0]


def test_two_beats_active_one_killed(stack_factory: StackFactory) -> None:
    env = {"RECONCILE_INTERVAL_SECONDS": str(PERIOD), "REDBEAT_LOCK_TIMEOUT": str(LOCK_TIMEOUT)}
    stack = stack_factory(StackOptions(accounts=20, env=env))
    assert stack.sims is not None
    stack.worker("worker1", concurrency=2)
    beats = [stack.beat("beat1"), stack.beat("beat2")]
    stack.wait_until(lambda: len(runs(stack)) >= 2, 60, "two reconciliation runs")
    victim = active_beat(beats)
    standby = next(b for b in beats if b is not victim)
    victim.kill()
    killed_at = time.time()
    stack.wait_until(
        lambda: sum(1 for r in runs(stack) if float(r["started_at"]) > killed_at) >= 3,  # type: ignore[arg-type]
        LOCK_TIMEOUT + 5 * PERIOD + 30,
        "three runs after the failover",
    )
    history = runs(stack)
    starts = [float(r["started_at"]) for r in history]  # type: ignore[arg-type]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    skipped = [r for r in history if r["status"] == "skipped"]
    first_after = min(s for s in starts if s > killed_at)
    owners = [phone for _, phone in stack.sims.account_owners()]
    contacts = tally.tally(owners, tally.count_phones(stack.sims.contact_phones()))
    report.record(
        report.ScenarioOutcome(
            scenario="9 beat failover (runs)",
            messages=len(history),
            lost=sum(1 for g in gaps if g > PERIOD + LOCK_TIMEOUT + 5),
            duplicated=len(skipped) + sum(1 for g in gaps if g < PERIOD * 0.5) + contacts.extra,
            dead_lettered=len(stack.dead_letters()),
            recovery_s=first_after - killed_at,
        )
    )
    assert SENDING in standby.output(), "the standby beat never took over"
    assert not skipped, f"runs skipped (two due at once): {skipped}"
    assert all(g >= PERIOD * 0.5 for g in gaps), f"runs closer than the period: {gaps}"
    assert first_after - killed_at <= PERIOD + LOCK_TIMEOUT + 5, (
        f"failover took {first_after - killed_at:.1f}s"
    )
    assert contacts.exact, contacts.describe("contacts per account owner")
