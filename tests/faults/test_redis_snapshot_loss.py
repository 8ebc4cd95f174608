"""Scenario 13: Redis dies and comes back from an append-only file that lacks its last seconds.

What ``appendfsync everysec`` (or an RDB snapshot, or a replica promoted before it caught up) allows:
Redis acknowledged writes that are not in the files it restarts from. Here the stack's AOF is copied
while the system is idle (workers stopped), then 20 messages arrive: the ingest worker enqueues their
chains and ledger entries into Redis, and waits well past the consumer's 5 s auto-commit, so an ingest
worker that commits offsets once Redis accepted a chain would have committed every one of them. Then
Redis is killed (``kill -9``) and restarted from the copy: those chains, ledger entries and effect
markers never existed. The ingest worker still holds the records (their messages never settled), finds
them unknown to Redis and enqueues them again; the restarted workers post each exactly once.

No message of the lost window had been posted before the crash, so this run expects no duplicate. The
second test keeps the workers running through the window and measures the duplicates that costs.
"""

from __future__ import annotations

import shutil
import time

from tasks.state import inflight
from tests.faults import report
from tests.faults.conftest import StackFactory
from tests.faults.harness import Stack
from tests.faults.scenario import finish, now

LOST_WINDOW_MESSAGES = 20
AUTO_COMMIT_SECONDS = 5.0  # librdkafka's auto.commit.interval.ms default, which the consumer keeps


def test_redis_restored_from_an_older_aof_loses_no_message(stack_factory: StackFactory) -> None:
    stack = stack_factory()
    assert stack.redis_server is not None
    stack.worker("worker1", concurrency=4)
    stack.ingest()
    subscribers = stack.subscribers(8)
    stack.send(10, subscribers)
    stack.wait_delivered(90)
    stack.wait_settled()

    # The snapshot: what Redis will restart from, taken while nothing writes but status heartbeats.
    stack.workers["worker1"].stop()
    aof = stack.workdir / "valkey-data" / "appendonlydir"
    assert aof.is_dir(), f"no AOF at {aof}"
    snapshot = stack.workdir / "aof-snapshot"
    shutil.copytree(aof, snapshot)

    stack.send(LOST_WINDOW_MESSAGES, subscribers)
    stack.wait_until(
        lambda: inflight.count(stack.redis()) >= LOST_WINDOW_MESSAGES, 60, "the new chains enqueued"
    )
    time.sleep(AUTO_COMMIT_SECONDS + 1.5)  # commit-on-enqueue would have committed all of them by now

    stack.redis_server.kill()
    shutil.rmtree(aof)
    shutil.copytree(snapshot, aof)
    stack.redis_server.start()
    stack.wait_until(lambda: bool(stack.redis().ping()), 30, "the restored Redis answering")
    assert inflight.count(stack.redis()) == 0, "the restored Redis still knows the lost window"

    # kombu's pooled control connections to the killed Redis fail once each before being replaced.
    stack.wait_until(lambda: stack.probe.control.ping(timeout=0.2) is not None, 30, "control pings answered")
    stack.worker("worker2", concurrency=4)
    finish(stack, "13j redis restored from older AOF", fault_ended_at=now(), deliver_timeout=120)


def _posts_once_quiet(stack: Stack) -> int:
    """Window messages posted once the dead Redis stopped the workers: a post whose request was already
    on its way when Redis died still lands (under load, after the kill), so count when two readings
    half a second apart agree (no new task can start without Redis)."""
    last = -1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        posted = LOST_WINDOW_MESSAGES - len(stack.posts().lost)
        if posted == last:
            return posted
        last = posted
        time.sleep(0.5)
    return last


def test_messages_posted_in_the_lost_window_are_posted_at_most_twice(stack_factory: StackFactory) -> None:
    """The same fault with the workers running: some messages of the lost window were posted before
    the crash, and their effect markers went with it. Still 0 lost; each of those may be posted once
    more (README "Guarantees"), never more, and no contact is made twice. The row's duplicated column
    is the measured count, not a target."""
    stack = stack_factory()
    assert stack.redis_server is not None and stack.sims is not None
    stack.sims.bitrix24_fault("latency", seconds=0.1)  # posts keep coming while Redis is killed
    stack.worker("worker1", concurrency=2)
    stack.ingest()
    subscribers = stack.subscribers(8)
    stack.send(10, subscribers)
    stack.wait_delivered(90)
    stack.wait_settled()

    aof = stack.workdir / "valkey-data" / "appendonlydir"
    snapshot = stack.workdir / "aof-snapshot"
    shutil.copytree(aof, snapshot)
    window = stack.send(LOST_WINDOW_MESSAGES, subscribers)
    stack.wait_until(lambda: len(stack.posts().lost) <= LOST_WINDOW_MESSAGES - 5, 60, "some window posts")

    stack.redis_server.kill()
    posted_in_window = _posts_once_quiet(stack)
    shutil.rmtree(aof)
    shutil.copytree(snapshot, aof)
    stack.redis_server.start()
    fault_end = now()
    stack.wait_until(lambda: bool(stack.redis().ping()), 30, "the restored Redis answering")

    delivered_at = stack.wait_delivered(120)
    stack.wait_settled()
    posts, contacts = stack.posts(), stack.contacts()
    report.record(
        report.ScenarioOutcome(
            scenario="13k redis older AOF, posts in window",
            messages=posts.expected,
            lost=len(posts.lost),
            duplicated=posts.extra + contacts.extra,
            dead_lettered=len(stack.dead_letters()),
            recovery_s=max(0.0, delivered_at - fault_end),
        )
    )
    assert not posts.lost, posts.describe("chat posts") + "\n" + stack.diagnostics()
    assert contacts.exact, contacts.describe("contacts per subscriber")
    window_markers = {m.marker for m in window}
    assert set(posts.duplicated) <= window_markers, posts.describe("chat posts")
    assert all(n <= 2 for n in posts.duplicated.values()), posts.describe("chat posts")
    assert posts.extra <= posted_in_window, f"{posts.extra} duplicates, {posted_in_window} posted before"
    assert not inflight.stalled(stack.redis(), older_than=0)
