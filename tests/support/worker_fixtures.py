"""Worker fixtures for every task-layer test, registered in ``tests/conftest.py`` (``pytest_plugins``).

``celery_worker_factory(env=None, *, pool="threads", concurrency=4, queues=None, include=())`` starts a
:class:`~tests.support.celery_worker.CeleryWorker` with ``REDIS_URL`` = this session's test DB and fast
retry settings; every worker still running at session end is stopped. ``celery_app`` points this
process's ``tasks.app`` (and ``tasks.settings``) at the same test DB. ``celery_worker`` is one shared
session worker wired to both simulators (``sims_worker_env``) with the probe tasks of
``tests.support.probe_tasks``. ``module_redis_url`` / ``module_redis``: a Redis DB owned by one module.

Requesting ``celery_worker_factory`` (directly or through these) marks a test ``process``
(``tests/support/process_marker.py``), so ``make test-fast`` leaves it out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import redis
from celery import Celery

from tests.support.celery_worker import FAST_RETRY_ENV, UNBATCHED_ENV, CeleryWorker, point_app_at
from tests.support.paths import REPO_ROOT


@pytest.fixture(scope="session")
def celery_app(redis_url: str) -> Iterator[Celery]:
    previous = os.environ.get("REDIS_URL")
    app = point_app_at(redis_url)
    yield app
    if previous is None:
        os.environ.pop("REDIS_URL", None)
    else:
        os.environ["REDIS_URL"] = previous


@pytest.fixture(scope="session")
def worker_base_env(redis_url: str) -> dict[str, str]:
    """The environment every test worker starts from (before per-test overrides)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PYTEST_"))}
    env.update(FAST_RETRY_ENV)
    env.update(UNBATCHED_ENV)
    env.update({"REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)})
    return env


@pytest.fixture(scope="session")
def celery_worker_factory(
    celery_app: Celery, worker_base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., CeleryWorker]]:
    started: list[CeleryWorker] = []
    log_dir = tmp_path_factory.mktemp("workers")

    def start(env: Mapping[str, str] | None = None, **options: Any) -> CeleryWorker:
        merged = {**worker_base_env, **(env or {})}
        worker = CeleryWorker(celery_app, merged, log_dir / f"worker-{len(started)}.log", **options)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop(timeout=15)


@pytest.fixture
def on_session_db(celery_app: Celery, redis_url: str) -> Celery:
    """``celery_app`` pointed (back) at the session DB: use it in tests that may run after a module
    that re-pointed the shared app at a DB of its own (``pytest.mark.usefixtures("on_session_db")``)."""
    if celery_app.conf.broker_url != redis_url:
        point_app_at(redis_url)
    return celery_app


@pytest.fixture(scope="session")
def sims_worker_env(rosdomofon_sim: Any, bitrix24_sim: Any) -> dict[str, str]:
    """Worker env pointing at the session RosDomofon and Bitrix24 (webhook) simulators."""
    return {
        "ROSDOMOFON_BASE_URL": rosdomofon_sim.url,
        "ROSDOMOFON_USERNAME": rosdomofon_sim.username,
        "ROSDOMOFON_PASSWORD": rosdomofon_sim.password,
        "ROSDOMOFON_TIMEOUT": "5",
        "BITRIX24_WEBHOOK_URL": bitrix24_sim.webhook_url,
        "BITRIX24_TIMEOUT": "5",
    }


@pytest.fixture(scope="session")
def celery_worker(
    celery_worker_factory: Callable[..., CeleryWorker], sims_worker_env: dict[str, str]
) -> CeleryWorker:
    """One shared worker for the session: both simulators, the probe tasks, and every queue but
    ``reconcile`` (so it never takes a reconciliation run another module's worker is meant to do)."""
    queues = ["rosdomofon", "bitrix24", "flows"]
    return celery_worker_factory(sims_worker_env, queues=queues, include=("tests.support.probe_tasks",))


@pytest.fixture(scope="module")
def module_redis_url(redis_server_url: str, redis_url: str, celery_app: Any) -> Iterator[str]:
    """A Redis DB owned by one test module, so its worker never takes other modules' tasks.

    ``tasks.app`` in this process points at it meanwhile, and back at the session DB afterwards.
    """
    from tests.conftest import _claim_free_db

    url = _claim_free_db(redis_server_url)
    point_app_at(url)
    try:
        yield url
    finally:
        redis.Redis.from_url(url).flushdb()
        point_app_at(redis_url)


@pytest.fixture(scope="module")
def module_redis(module_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(module_redis_url, decode_responses=True)
    yield client
    client.close()
