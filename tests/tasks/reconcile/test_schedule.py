from __future__ import annotations

from datetime import timedelta

import pytest
from celery.schedules import crontab

from tasks.errors import ScheduleError
from tasks.runtime.schedule import beat_defaults, crontab_period, parse_crontab
from tasks.settings import Settings


def settings(**env: str) -> Settings:
    return Settings.model_validate(env)


def test_interval_schedule_with_expiry_of_one_and_a_half_intervals() -> None:
    conf = beat_defaults(settings(RECONCILE_INTERVAL_SECONDS="600", REDBEAT_LOCK_TIMEOUT="50"))
    entry = conf["beat_schedule"]["reconcile-accounts"]
    assert entry["task"] == "reconcile.run"
    assert entry["schedule"] == timedelta(seconds=600)
    assert entry["options"] == {"queue": "reconcile", "expires": 900.0}
    assert conf["beat_scheduler"] == "redbeat.RedBeatScheduler"
    assert conf["redbeat_lock_timeout"] == 50 and conf["beat_max_loop_interval"] == 10


def test_crontab_wins_over_the_interval_and_expiry_follows_it() -> None:
    entry = beat_defaults(settings(RECONCILE_CRONTAB="*/20 * * * *"))["beat_schedule"]["reconcile-accounts"]
    assert isinstance(entry["schedule"], crontab)
    assert entry["options"]["expires"] == 1800.0


@pytest.mark.parametrize(
    ("expr", "period"), [("0 3 * * *", 86400), ("0 3 * * 1", 7 * 86400), ("5,35 * * * *", 1800)]
)
def test_crontab_period(expr: str, period: float) -> None:
    assert crontab_period(parse_crontab(expr)) == period


@pytest.mark.parametrize("expr", ["*/15 * * *", "61 * * * *"])
def test_bad_crontab_names_the_variable(expr: str) -> None:
    with pytest.raises(ScheduleError, match="RECONCILE_CRONTAB"):
        parse_crontab(expr)
