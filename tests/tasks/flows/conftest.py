"""Fixtures for the message and reply flows: simulators over HTTP, a webhook receiver process and a real
worker, all on a Redis database of their own.

Flow workers consume every queue, so a worker left running by another test module (the shared worker
factory stops workers only at session end) would steal flow tasks and run them without simulator
settings. Each flow module therefore claims its own Redis database: its worker, its webhook receiver
and this process's ``tasks.app`` all point at it, and the session database is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon.server import RosDomofonSimulator


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
