"""Test-only operation tasks whose failures are scripted, to exercise the base task's retry policy.

Loaded into a test worker with ``-I tests.support.probe_tasks``. ``probe.flaky`` raises, on its n-th
call for ``key``, the error category ``failures[n-1]`` and succeeds once the script is exhausted; each
call records what ``current_attempt()`` said, so tests can check the body saw retries and replays.
"""

from __future__ import annotations

import json
import os
import time

from pydantic import BaseModel, Field

from clients.errors import (
    DoNotRetryError,
    FixInputError,
    LookUpFirstError,
    RateLimitedError,
    ReauthenticateError,
    RetryLaterError,
)
from tasks.runtime.operation import current_attempt, operation
from tasks.runtime.queues import Queue
from tasks.runtime.resources import redis_client
from tasks.runtime.retry_policy import RetryOptions

ERRORS = {
    "rate_limited": RateLimitedError,
    "transient": RetryLaterError,
    "look_up_first": LookUpFirstError,
    "reauth": ReauthenticateError,
    "fix_input": FixInputError,
    "refused": DoNotRetryError,
}


class FlakyPayload(BaseModel):
    key: str
    failures: list[str] = Field(default_factory=list)
    retry_after: float | None = None
    secret_note: str | None = None  # lets a test check that credential-looking values are masked


class FlakyResult(BaseModel):
    key: str
    calls: int


def calls_key(key: str) -> str:
    return f"rdb24:test:probe:{key}:calls"


def attempts_key(key: str) -> str:
    return f"rdb24:test:probe:{key}:attempts"


@operation("probe.flaky", queue=Queue.FLOWS, payload=FlakyPayload, result=FlakyResult)
def flaky(payload: FlakyPayload) -> FlakyResult:
    """Fail as scripted, then succeed."""
    return _flaky(payload)


@operation(
    "probe.impatient",
    queue=Queue.FLOWS,
    payload=FlakyPayload,
    result=FlakyResult,
    retry=RetryOptions(max_retries=1, backoff_max=0.5),
)
def impatient(payload: FlakyPayload) -> FlakyResult:
    """``probe.flaky`` with a budget of its own: one transient retry, however many MAX_RETRIES allows."""
    return _flaky(payload)


def _flaky(payload: FlakyPayload) -> FlakyResult:
    client = redis_client()
    calls = int(client.incr(calls_key(payload.key)))
    attempt = current_attempt()
    assert attempt is not None
    client.rpush(
        attempts_key(payload.key),
        json.dumps({"number": attempt.number, "is_retry": attempt.is_retry, "replay_of": attempt.replay_of}),
    )
    if calls <= len(payload.failures):
        kind = payload.failures[calls - 1]
        if kind == "bug":
            raise RuntimeError(f"scripted bug on call {calls}")
        raise ERRORS[kind](f"scripted {kind} on call {calls}", status=503, retry_after=payload.retry_after)
    return FlakyResult(key=payload.key, calls=calls)


class AddPayload(BaseModel):
    x: int
    y: int = 0


class SumResult(BaseModel):
    x: int


@operation("probe.add", queue=Queue.FLOWS, payload=AddPayload, result=SumResult)
def add(payload: AddPayload) -> SumResult:
    """x + y, returned as the next step's ``x`` (chains pass results on as payloads)."""
    return SumResult(x=payload.x + payload.y)


class CrashPayload(BaseModel):
    key: str
    crashes: int = 1_000_000  # how many runs kill their process before one succeeds


@operation("probe.crash", queue=Queue.FLOWS, payload=CrashPayload, result=FlakyResult)
def crash(payload: CrashPayload) -> FlakyResult:
    """Kill the worker process (as an OOM kill or a segfault would) on the first ``crashes`` runs."""
    calls = int(redis_client().incr(calls_key(payload.key)))
    if calls <= payload.crashes:
        os._exit(70)  # no finally, no ack: the worker loses its child mid-task
    return FlakyResult(key=payload.key, calls=calls)


@operation("probe.hang", queue=Queue.FLOWS, payload=CrashPayload, result=FlakyResult)
def hang(payload: CrashPayload) -> FlakyResult:
    """A wait that ignores the soft time limit (as a stuck C call would): only the hard limit ends it."""
    from celery.exceptions import SoftTimeLimitExceeded

    calls = int(redis_client().incr(calls_key(payload.key)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            time.sleep(0.1)
        except SoftTimeLimitExceeded:
            continue
    return FlakyResult(key=payload.key, calls=calls)
