"""The common ending of every scenario: settle, count in the simulators, record the row, assert."""

from __future__ import annotations

import time

from tasks.state import inflight
from tests.faults import report
from tests.faults.harness import Stack


def finish(
    stack: Stack,
    scenario: str,
    *,
    fault_ended_at: float,
    deliver_timeout: float = 90.0,
    expected_dead_letters: int = 0,
) -> report.ScenarioOutcome:
    """Wait for delivery and a drained broker, record the outcome, then assert exactly-once effects.

    ``fault_ended_at`` (monotonic) is when the injected fault stopped; recovery time runs from there
    to the moment the last message reached its chat.
    """
    recovery: float | None = None
    error: AssertionError | None = None
    try:
        delivered_at = stack.wait_delivered(deliver_timeout)
        recovery = max(0.0, delivered_at - fault_ended_at)
        stack.wait_settled()
    except AssertionError as exc:
        error = exc
    posts, contacts, letters = stack.posts(), stack.contacts(), stack.dead_letters()
    outcome = report.record(
        report.ScenarioOutcome(
            scenario=scenario,
            messages=posts.expected,
            lost=len(posts.lost),
            duplicated=posts.extra + contacts.extra,
            dead_lettered=len(letters),
            recovery_s=recovery,
        )
    )
    if error is not None:
        raise error
    assert posts.exact, posts.describe("chat posts") + "\n" + stack.diagnostics()
    assert contacts.exact, contacts.describe("contacts per subscriber") + "\n" + stack.diagnostics()
    assert len(letters) == expected_dead_letters, (
        f"dead letters: {[(d.name, d.reason, d.error) for d in letters]}"
    )
    # Every message was posted or dead-lettered, so none may be left for the resend sweep.
    left = inflight.stalled(stack.redis(), older_than=0)
    assert not left, f"in-flight ledger not settled: {[m.message_id for m in left][:10]}"
    return outcome


def now() -> float:
    return time.monotonic()
