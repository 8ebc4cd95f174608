"""``rdb24 reconcile``: the dry run prints the plan and writes nothing; ``--inline`` reconciles."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner

from sandbox.bitrix24.server import Bitrix24Simulator
from sandbox.rosdomofon import RosDomofonSimulator
from tasks.cli import main
from tests.tasks.reconcile.conftest import PortalView


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch, rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, redis_url: str
) -> Iterator[None]:
    from tasks.runtime import resources as clients
    from tasks.settings import get_settings

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ROSDOMOFON_BASE_URL", rd_sim.url)
    monkeypatch.setenv("ROSDOMOFON_USERNAME", rd_sim.username)
    monkeypatch.setenv("ROSDOMOFON_PASSWORD", rd_sim.password)
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", b24_sim.webhook_url)
    get_settings.cache_clear()
    clients.reset_all()
    yield
    get_settings.cache_clear()
    clients.reset_all()


def test_dry_run_prints_the_plan_then_inline_run_writes(
    configured: None, store: redis.Redis, portal: PortalView
) -> None:
    runner = CliRunner()
    dry = runner.invoke(main, ["reconcile", "--dry-run", "--limit", "5"])
    assert dry.exit_code == 0, dry.output
    assert "would create 30, update 0, adopt 0" in dry.output
    assert "... and 25 more" in dry.output
    assert portal.contacts() == []

    inline = runner.invoke(main, ["reconcile", "--inline"])
    assert inline.exit_code == 0, inline.output
    report = json.loads(inline.output[inline.output.index("{") :])
    assert report["status"] == "ok" and report["created"] == 30
    assert len(portal.contacts()) == 30

    again = runner.invoke(main, ["reconcile", "--dry-run"])
    assert "would create 0, update 0, adopt 0; unchanged 30 of 30 accounts" in again.output
