"""``reconcile.run`` on a real Celery worker: kill -9 of the worker mid-run, then a new run, no duplicates."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from celery import Celery

from sandbox.bitrix24.server import Bitrix24Simulator
from sandbox.rosdomofon import RosDomofonSimulator
from tasks.reconcile.lock import RUN_LOCK_KEY
from tests.tasks.reconcile.conftest import PortalView

ACCOUNTS = 300


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)
    return value


def run_to_completion(app: Celery, store: redis.Redis, timeout: float = 90) -> dict[str, Any]:
    """Enqueue runs until one is not skipped (a killed run's lock lapses after its short TTL)."""
    deadline = time.monotonic() + timeout
    while True:
        wait_for(lambda: not store.exists(RUN_LOCK_KEY), timeout, "the dead run's lock to lapse")
        report = app.send_task("reconcile.run", kwargs={}, queue="reconcile").get(timeout=timeout)
        if report["status"] != "skipped":
            return report
        assert time.monotonic() < deadline, "every run was skipped"


@pytest.mark.timeout(180)
def test_kill_9_mid_run_then_a_new_run_leaves_no_duplicates(
    make_rosdomofon_sim: Callable[..., RosDomofonSimulator],
    b24_sim: Bitrix24Simulator,
    portal: PortalView,
    store: redis.Redis,
    celery_app: Celery,
    celery_worker_factory: Callable[..., Any],
) -> None:
    rd_sim = make_rosdomofon_sim(accounts=ACCOUNTS, seed=23)
    env = {
        "ROSDOMOFON_BASE_URL": rd_sim.url,
        "ROSDOMOFON_USERNAME": rd_sim.username,
        "ROSDOMOFON_PASSWORD": rd_sim.password,
        "BITRIX24_WEBHOOK_URL": b24_sim.webhook_url,
        # Slow writes down (1 request per 0.4 s after a burst of 2) so the kill lands mid-run.
        "BITRIX24_RATE": "2.5",
        "BITRIX24_BURST": "2",
        "RECONCILE_LOCK_TTL": "2",
    }
    worker = celery_worker_factory(env, queues=["reconcile"], pool="prefork", concurrency=1)
    celery_app.send_task("reconcile.run", kwargs={}, queue="reconcile")
    wait_for(lambda: 0 < len(portal.contacts()) < ACCOUNTS, 60, "the run to have created some contacts")
    worker.kill()
    created_before_kill = len(portal.contacts())
    assert created_before_kill < ACCOUNTS

    celery_worker_factory(env, queues=["reconcile"], pool="prefork", concurrency=1)
    report = run_to_completion(celery_app, store)

    contacts = portal.contacts()
    origins = Counter(c["ORIGIN_ID"] for c in contacts)
    assert len(contacts) == ACCOUNTS, f"{len(contacts)} contacts for {ACCOUNTS} accounts"
    assert origins.most_common(1)[0][1] == 1
    assert report["status"] == "ok" and report["failed"] == 0
    assert report["created"] + report["unchanged"] == ACCOUNTS
    assert report["unchanged"] >= created_before_kill  # what the killed run wrote is found, not redone
