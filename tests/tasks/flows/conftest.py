"""Fixtures for the message and reply flows: simulators over HTTP, a webhook receiver process and a real
worker, all on a Redis database of their own.

Flow workers consume every queue, so a worker left running by another test module (the shared worker
factory stops workers only at session end) would steal flow tasks and run them without simulator
settings. Each flow module therefore claims its own Redis database: its worker, its webhook receiver
and this process's ``tasks.app`` all point at it, and the session database is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon.server import RosDomofonSimulator
from tests.conftest import _claim_free_db
from tests.fixtures.worker import point_app_at


@pytest.fixture(scope="module")
def flow_redis_url(redis_server_url: str, redis_url: str, celery_app: Any) -> Iterator[str]:
    """A Redis DB owned by this module; ``tasks.app`` in this process points at it meanwhile."""
    url = _claim_free_db(redis_server_url)
    point_app_at(url)
    try:
        yield url
    finally:
        redis.Redis.from_url(url).flushdb()
        point_app_at(redis_url)


@pytest.fixture(scope="module")
def flow_redis(flow_redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(flow_redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def rd_sim() -> Iterator[RosDomofonSimulator]:
    sim = RosDomofonSimulator(accounts=12, seed=7).start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def b24_sim() -> Iterator[Bitrix24Simulator]:
    sim = Bitrix24Simulator(rate_limit=False).start()
    yield sim
    sim.stop()
