"""What ``@operation`` accepts besides the payload: a retry budget, and nothing else."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from tasks.cli.commands.catalogue import tasks_command
from tasks.runtime.operation import REGISTRY, operation
from tasks.runtime.queues import DECLARED, Queue
from tasks.runtime.retry_policy import RetryOptions
from tests.support import probe_tasks  # noqa: F401  (registers probe.impatient, which declares options)


class Empty(BaseModel):
    pass


@pytest.mark.parametrize("option", ["max_retries", "autoretry_for", "retry_backoff", "rate_limit"])
def test_an_unknown_option_is_refused_when_the_task_is_declared(option: str) -> None:
    with pytest.raises(TypeError, match=option):
        operation("probe.never_declared", queue=Queue.FLOWS, payload=Empty, **{option: 3})  # type: ignore[call-arg]
    assert "probe.never_declared" not in REGISTRY and "probe.never_declared" not in DECLARED


def test_retry_must_be_retry_options() -> None:
    with pytest.raises(TypeError, match="RetryOptions"):
        operation("probe.never_declared", queue=Queue.FLOWS, payload=Empty, retry={"max_retries": 1})  # type: ignore[arg-type]


def test_the_declared_options_are_kept_in_the_registry() -> None:
    assert REGISTRY["probe.impatient"].retry == RetryOptions(max_retries=1, backoff_max=0.5)
    assert REGISTRY["probe.flaky"].retry == RetryOptions()


def test_rdb24_tasks_name_prints_the_retry_options() -> None:
    shown = CliRunner().invoke(tasks_command, ["probe.impatient"])
    assert shown.exit_code == 0, shown.output
    retry_line = next(line for line in shown.output.splitlines() if "retry:" in line)
    assert "max_retries=1" in retry_line and "backoff_max=0.5" in retry_line
    assert "max_rate_limit_retries=MAX_RATE_LIMIT_RETRIES" in retry_line  # unset: the setting decides
    as_json = CliRunner().invoke(tasks_command, ["probe.flaky", "--json"])
    assert json.loads(as_json.output)[0]["retry"] == {
        "max_retries": None,
        "backoff_max": None,
        "max_rate_limit_retries": None,
        "rate_limit_wait_max": None,
    }
