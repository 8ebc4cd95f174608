"""Scenario: a task that kills its worker process (OOM, segfault) ends in a dead letter, not a loop.

Late acks with requeue on worker loss bring such a message back after every crash, which is right
for a crash that happens once and an endless loop for one that happens every time. The probe task
``probe.crash`` calls ``os._exit`` on its first runs: one that crashes twice then succeeds is run
to success; one that always crashes runs ``MAX_WORKER_CRASHES`` times and is then dead-lettered
with reason ``worker_crashed``, and the broker is left empty.
"""

from __future__ import annotations

import uuid

from schemas.dead_letters import DeadLetterReason
from tests.faults import report
from tests.faults.conftest import StackFactory
from tests.faults.scenario import now
from tests.tasks.probe_tasks import calls_key

MAX_WORKER_CRASHES = 3


def test_a_task_that_kills_its_worker_is_dead_lettered_after_n_crashes(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    stack.worker(
        "worker1",
        concurrency=1,
        include=("tests.tasks.probe_tasks",),
        MAX_WORKER_CRASHES=str(MAX_WORKER_CRASHES),
    )
    client = stack.redis()
    always, twice = f"always-{uuid.uuid4().hex[:8]}", f"twice-{uuid.uuid4().hex[:8]}"
    started = now()
    doomed = stack.probe.send_task("probe.crash", kwargs={"key": always}, queue="flows")
    survivor = stack.probe.send_task("probe.crash", kwargs={"key": twice, "crashes": 2}, queue="flows")
    stack.wait_until(lambda: len(stack.dead_letters()) >= 1, 120, "the crash-looping task's dead letter")
    assert survivor.get(timeout=120) == {"key": twice, "calls": 3}
    stack.wait_settled(timeout=60)
    letters = stack.dead_letters()
    report.record(
        report.ScenarioOutcome(
            scenario="14g task kills its worker (os._exit) x N",
            messages=2,
            lost=0 if letters and survivor.successful() else 1,
            duplicated=0,
            dead_lettered=len(letters),
            recovery_s=now() - started,
        )
    )
    assert [(d.name, d.reason) for d in letters] == [("probe.crash", DeadLetterReason.WORKER_CRASHED.value)]
    assert letters[0].source["task_id"] == doomed.id
    assert "MAX_WORKER_CRASHES=3" in letters[0].error
    # Run exactly N times (each one killed its process), never again after the dead letter.
    assert int(client.get(calls_key(always)) or 0) == MAX_WORKER_CRASHES


def test_a_task_past_its_hard_time_limit_is_requeued_then_dead_lettered(stack_factory: StackFactory) -> None:
    """Celery acks a late-ack message whose task hit the hard limit; ours is requeued, never lost."""
    stack = stack_factory()
    stack.worker(
        "worker1",
        concurrency=1,
        include=("tests.tasks.probe_tasks",),
        MAX_WORKER_CRASHES="2",
        TASK_SOFT_TIME_LIMIT="1",
        TASK_TIME_LIMIT="2",
    )
    key = f"hang-{uuid.uuid4().hex[:8]}"
    stuck = stack.probe.send_task("probe.hang", kwargs={"key": key}, queue="flows")
    stack.wait_until(lambda: len(stack.dead_letters()) >= 1, 90, "the hanging task's dead letter")
    stack.wait_settled(timeout=30)
    letters = stack.dead_letters()
    assert [(d.name, d.reason, d.source["task_id"]) for d in letters] == [
        ("probe.hang", DeadLetterReason.WORKER_CRASHED.value, stuck.id)
    ]
    assert int(stack.redis().get(calls_key(key)) or 0) == 2  # killed twice by the hard limit, then stopped
