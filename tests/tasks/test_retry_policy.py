"""The retry policy table: category -> retry or not, countdowns capped below the visibility timeout."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from clients.errors import (
    DoNotRetryError,
    FixInputError,
    LookUpFirstError,
    NotFoundError,
    RateLimitedError,
    ReauthenticateError,
    RetryLaterError,
)
from tasks.runtime.retry_policy import Cause, backoff, classify, decide
from tasks.settings import Settings

SETTINGS = Settings(RETRY_BACKOFF_BASE=2, RETRY_BACKOFF_MAX=60, MAX_RETRIES=3, MAX_RATE_LIMIT_RETRIES=5)


def _validation_error() -> ValidationError:
    class Model(BaseModel):
        x: int

    try:
        Model.model_validate({"x": "a"})
    except ValidationError as exc:
        return exc
    raise AssertionError


@pytest.mark.parametrize(
    ("error", "cause", "retry"),
    [
        (RateLimitedError("slow down", retry_after=3), Cause.RATE_LIMITED, True),
        (RetryLaterError("503"), Cause.TRANSIENT, True),
        (LookUpFirstError("timeout on write"), Cause.LOOK_UP_FIRST, True),
        (ReauthenticateError("401"), Cause.REAUTHENTICATE, False),
        (FixInputError("400"), Cause.INVALID_INPUT, False),
        (NotFoundError("404"), Cause.INVALID_INPUT, False),
        (DoNotRetryError("403"), Cause.REFUSED, False),
        (_validation_error(), Cause.INVALID_INPUT, False),
        (KeyError("bug"), Cause.UNEXPECTED, False),
    ],
)
def test_each_category_has_one_decision(error: Exception, cause: Cause, retry: bool) -> None:
    assert classify(error) is cause
    assert decide(error, {}, SETTINGS).retry is retry


def test_rate_limits_wait_the_server_delay_and_have_their_own_budget() -> None:
    decision = decide(RateLimitedError("x", retry_after=3), {"transient": 3}, SETTINGS)
    assert decision.retry and 3 <= decision.countdown <= 4
    capped = decide(RateLimitedError("x", retry_after=10_000), {}, SETTINGS)
    assert capped.countdown <= SETTINGS.rate_limit_wait_max + 1
    spent = decide(RateLimitedError("x"), {"rate_limited": 5}, SETTINGS)
    assert not spent.retry and spent.exhausted


def test_transient_backoff_grows_with_jitter_and_is_capped() -> None:
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (10, 60)]:
        waits = [backoff(attempt, SETTINGS) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # jittered
    assert not decide(RetryLaterError("x"), {"transient": 2, "look_up_first": 1}, SETTINGS).retry
    assert backoff(1, SETTINGS, server_wait=30) == 30  # a server's longer Retry-After wins


def test_settings_keep_every_countdown_below_the_visibility_timeout() -> None:
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT"):
        Settings(VISIBILITY_TIMEOUT=100, RETRY_BACKOFF_MAX=100)
