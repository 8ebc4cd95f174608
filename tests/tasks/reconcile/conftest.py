"""Fresh simulators per test (reconciliation changes their worlds) and a clean reconcile state in Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import requests

from clients.bitrix24 import Bitrix24Config
from clients.bitrix24.client import Bitrix24Client
from clients.rosdomofon import RosDomofonAPI
from sandbox.bitrix24.server import Bitrix24Simulator
from sandbox.rosdomofon import RosDomofonSimulator
from tasks.state.keys import BITRIX24_NAMESPACE

RECONCILE_KEYS = ("rdb24:reconcile:*", "rdb24:lock:reconcile", "rdb24:accounts:*")


def clear_reconcile_state(client: redis.Redis) -> None:
    for pattern in RECONCILE_KEYS:
        for key in client.scan_iter(pattern):
            client.delete(key)


@pytest.fixture
def store(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    clear_reconcile_state(redis_client)
    yield redis_client
    clear_reconcile_state(redis_client)


@pytest.fixture
def b24_sim() -> Iterator[Bitrix24Simulator]:
    sim = Bitrix24Simulator(rate_limit=False).start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def b24_client(b24_sim: Bitrix24Simulator, redis_url: str, unique: str) -> Iterator[Bitrix24Client]:
    config = Bitrix24Config(
        key_prefix=BITRIX24_NAMESPACE,
        webhook_url=b24_sim.webhook_url,
        limiter_key=f"test-{unique}",
        timeout=2.0,
    )
    client = Bitrix24Client(config, redis=redis.Redis.from_url(redis_url))
    yield client
    client.close()


@pytest.fixture
def rd_sim(make_rosdomofon_sim: Callable[..., RosDomofonSimulator]) -> RosDomofonSimulator:
    return make_rosdomofon_sim(accounts=30, seed=11)


@pytest.fixture
def rd_api(rd_sim: RosDomofonSimulator) -> Iterator[RosDomofonAPI]:
    api = RosDomofonAPI(rd_sim.username, rd_sim.password, base_url=rd_sim.url, timeout=(2.0, 10.0))
    yield api
    api.close()


class PortalView:
    """The Bitrix24 simulator seen over its HTTP control API (not its Python state)."""

    def __init__(self, sim: Bitrix24Simulator) -> None:
        self.url = sim.url

    def contacts(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/_sandbox/contacts", timeout=10)
        answer.raise_for_status()
        body = answer.json()
        return body["contacts"] if isinstance(body, dict) else body

    def calls(self) -> dict[str, Any]:
        answer = requests.get(f"{self.url}/_sandbox/calls", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def writes(self) -> list[dict[str, Any]]:
        """Every contact write command run inside batches (and outside), in order."""
        return [c for c in self.calls()["calls"] if c["method"] in ("crm.contact.add", "crm.contact.update")]


@pytest.fixture
def portal(b24_sim: Bitrix24Simulator) -> PortalView:
    return PortalView(b24_sim)
