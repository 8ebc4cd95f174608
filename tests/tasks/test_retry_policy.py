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
from tasks.runtime.retry_policy import Budget, Cause, RetryOptions, backoff, classify, decide
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


def test_an_operations_options_replace_the_settings_they_name() -> None:
    strict = RetryOptions(max_retries=1, max_rate_limit_retries=0)
    assert decide(RetryLaterError("x"), {}, SETTINGS, strict).retry
    spent = decide(RetryLaterError("x"), {"transient": 1}, SETTINGS, strict)
    assert not spent.retry and spent.exhausted  # SETTINGS alone (MAX_RETRIES=3) would retry
    assert decide(RetryLaterError("x"), {"transient": 1}, SETTINGS).retry
    assert not decide(RateLimitedError("x"), {}, SETTINGS, strict).retry
    patient = RetryOptions(max_retries=10)
    assert decide(LookUpFirstError("x"), {"transient": 5}, SETTINGS, patient).retry
    assert not decide(LookUpFirstError("x"), {"transient": 5}, SETTINGS).retry


def test_an_operations_caps_bound_its_countdowns() -> None:
    short = RetryOptions(backoff_max=0.5, rate_limit_wait_max=2)
    waits = [decide(RetryLaterError("x"), {"transient": 2}, SETTINGS, short).countdown for _ in range(50)]
    assert all(0.25 <= w <= 0.5 for w in waits)  # SETTINGS' cap is 60 s; the ceiling at attempt 3 is 8 s
    assert decide(RetryLaterError("x", retry_after=30), {}, SETTINGS, short).countdown == 0.5
    limited = decide(RateLimitedError("x", retry_after=100), {}, SETTINGS, short)
    assert 2 <= limited.countdown <= 3


def test_fields_left_unset_fall_back_to_the_settings() -> None:
    assert RetryOptions().resolve(SETTINGS) == Budget(
        max_retries=3, backoff_max=60, max_rate_limit_retries=5, rate_limit_wait_max=300
    )
    assert RetryOptions(max_retries=0).resolve(SETTINGS).backoff_max == 60


def test_declared_caps_stay_below_the_visibility_timeout() -> None:
    budget = RetryOptions(backoff_max=10**6, rate_limit_wait_max=10**6).resolve(SETTINGS)
    assert budget.backoff_max < SETTINGS.visibility_timeout
    assert budget.rate_limit_wait_max + 1 < SETTINGS.visibility_timeout  # + the rate-limit spread


@pytest.mark.parametrize(
    "options",
    [{"max_retries": -1}, {"max_retries": 1.5}, {"max_rate_limit_retries": True}, {"backoff_max": 0}],
)
def test_nonsense_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        RetryOptions(**options)  # type: ignore[arg-type]
