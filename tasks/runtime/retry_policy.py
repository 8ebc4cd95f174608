"""The one retry policy table: what to do with each error category, and how long to wait.

Decided from ``clients.errors`` categories only, never from a service's own classes:

==================  ==================================================  ===========================
category            action                                              budget
==================  ==================================================  ===========================
WaitingError        not a failure: the task waits its turn (e.g. its      none: the body
                    subscriber's earlier message is still being posted);  bounds its own
                    retried after its ``retry_after``, never counted      wait (ORDER_WAIT_MAX)
                    against another budget
RateLimitedError    wait the server's ``retry_after`` (or the limiter's   ``MAX_RATE_LIMIT_RETRIES``
                    wait), capped by ``RATE_LIMIT_WAIT_MAX``
RetryLaterError     exponential backoff with jitter, capped by            ``MAX_RETRIES``
                    ``RETRY_BACKOFF_MAX`` (a server ``retry_after`` wins
                    when longer)
LookUpFirstError    same backoff; the body looks the record up first      ``MAX_RETRIES``
                    on the next attempt (``current_attempt().is_retry``)
ReauthenticateError drop cached clients, run once more at once            1
FixInputError,      no retry: dead letter                                 0
NotFoundError,
DoNotRetryError,
invalid payload
anything else       no retry: dead letter (a bug; replay after the fix)   0
==================  ==================================================  ===========================

Every countdown stays below ``VISIBILITY_TIMEOUT`` (Settings enforces it), so a delayed retry is
never redelivered while still scheduled.

The budgets and caps are per operation when it declares them: ``@operation(..., retry=RetryOptions(
max_retries=3))``; each field left ``None`` falls back to its setting (``SETTING_OF``). A declared cap
is clamped below ``VISIBILITY_TIMEOUT`` as well, so the same guarantee holds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import redis
from pydantic import ValidationError

from clients.errors import (
    DoNotRetryError,
    FixInputError,
    LookUpFirstError,
    RateLimitedError,
    ReauthenticateError,
    RetryLaterError,
)
from tasks.errors import WaitingError
from tasks.settings import Settings


class Cause(StrEnum):
    WAITING = "waiting"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    LOOK_UP_FIRST = "look_up_first"
    REAUTHENTICATE = "reauthenticate"
    INVALID_INPUT = "invalid_input"
    REFUSED = "refused"
    UNEXPECTED = "unexpected"


RETRYABLE = {Cause.WAITING, Cause.RATE_LIMITED, Cause.TRANSIENT, Cause.LOOK_UP_FIRST}
UNCOUNTED = {Cause.WAITING, Cause.RATE_LIMITED}  # not spent from MAX_RETRIES
WAIT_DEFAULT = 1.0  # seconds, for a WaitingError that names no retry_after


def classify(exc: BaseException) -> Cause:
    """The category of an error; order matters (Waiting and RateLimited are RetryLater)."""
    if isinstance(exc, WaitingError):
        return Cause.WAITING
    if isinstance(exc, RateLimitedError):
        return Cause.RATE_LIMITED
    if isinstance(exc, RetryLaterError | redis.ConnectionError | redis.TimeoutError):
        return Cause.TRANSIENT
    if isinstance(exc, LookUpFirstError):
        return Cause.LOOK_UP_FIRST
    if isinstance(exc, ReauthenticateError):
        return Cause.REAUTHENTICATE
    if isinstance(exc, FixInputError | ValidationError):
        return Cause.INVALID_INPUT
    if isinstance(exc, DoNotRetryError):
        return Cause.REFUSED
    return Cause.UNEXPECTED


# Each RetryOptions field and the setting (environment variable) it falls back to.
SETTING_OF: dict[str, str] = {
    "max_retries": "MAX_RETRIES",
    "backoff_max": "RETRY_BACKOFF_MAX",
    "max_rate_limit_retries": "MAX_RATE_LIMIT_RETRIES",
    "rate_limit_wait_max": "RATE_LIMIT_WAIT_MAX",
}
# A declared cap stays this far below VISIBILITY_TIMEOUT (room for the rate-limit spread of <= 1 s).
VISIBILITY_MARGIN = 2.0


@dataclass(frozen=True)
class RetryOptions:
    """One operation's retry budget; a ``None`` field falls back to its setting (see ``SETTING_OF``)."""

    max_retries: int | None = None  # transient and look-up-first retries
    backoff_max: float | None = None  # seconds, cap of the exponential backoff
    max_rate_limit_retries: int | None = None  # "slow down" answers, counted apart
    rate_limit_wait_max: float | None = None  # seconds, cap of a server's Retry-After

    def __post_init__(self) -> None:
        for name in ("max_retries", "max_rate_limit_retries"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"RetryOptions.{name} must be a whole number >= 0, got {value!r}")
        for name in ("backoff_max", "rate_limit_wait_max"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise ValueError(f"RetryOptions.{name} must be a number of seconds > 0, got {value!r}")

    def declared(self) -> dict[str, Any]:
        """Every field with its declared value (``None``: the setting decides)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def resolve(self, settings: Settings) -> Budget:
        """The values in force: declared ones, else the settings; caps kept below the visibility timeout."""
        ceiling = settings.visibility_timeout - VISIBILITY_MARGIN

        def cap(declared: float | None, default: float) -> float:
            return default if declared is None else min(declared, ceiling)

        return Budget(
            max_retries=settings.max_retries if self.max_retries is None else self.max_retries,
            backoff_max=cap(self.backoff_max, settings.retry_backoff_max),
            max_rate_limit_retries=(
                settings.max_rate_limit_retries
                if self.max_rate_limit_retries is None
                else self.max_rate_limit_retries
            ),
            rate_limit_wait_max=cap(self.rate_limit_wait_max, settings.rate_limit_wait_max),
        )


DEFAULT_OPTIONS = RetryOptions()


@dataclass(frozen=True)
class Budget:
    """Resolved :class:`RetryOptions`: every value known."""

    max_retries: int
    backoff_max: float
    max_rate_limit_retries: int
    rate_limit_wait_max: float


@dataclass(frozen=True)
class Decision:
    cause: Cause
    retry: bool
    countdown: float = 0.0
    exhausted: bool = False  # retryable, but the budget is spent


def decide(
    exc: BaseException,
    counts: dict[str, int],
    settings: Settings,
    options: RetryOptions = DEFAULT_OPTIONS,
) -> Decision:
    """Retry or give up, and after how long. ``counts`` are retries so far by cause."""
    cause = classify(exc)
    if cause not in RETRYABLE:
        return Decision(cause, retry=False)
    budget = options.resolve(settings)
    server_wait = getattr(exc, "retry_after", None)
    if cause is Cause.WAITING:
        wait = WAIT_DEFAULT if server_wait is None else server_wait
        return Decision(cause, retry=True, countdown=min(max(wait, 0.0), settings.rate_limit_wait_max))
    if cause is Cause.RATE_LIMITED:
        done = counts.get(Cause.RATE_LIMITED, 0)
        if done >= budget.max_rate_limit_retries:
            return Decision(cause, retry=False, exhausted=True)
        wait = server_wait if server_wait is not None else settings.retry_backoff_base
        wait = min(max(wait, 0.0), budget.rate_limit_wait_max)
        # A little spread so tasks told "wait 1 s" together do not all return in the same instant.
        return Decision(cause, retry=True, countdown=wait + random.uniform(0, min(1.0, wait * 0.1 + 0.05)))
    done = sum(v for k, v in counts.items() if k not in UNCOUNTED)
    if done >= budget.max_retries:
        return Decision(cause, retry=False, exhausted=True)
    return Decision(
        cause, retry=True, countdown=backoff(done + 1, settings, server_wait, cap=budget.backoff_max)
    )


def backoff(
    attempt: int, settings: Settings, server_wait: float | None = None, *, cap: float | None = None
) -> float:
    """Equal-jitter exponential backoff: half fixed, half random, capped; at least the server's wait.

    ``cap`` is the operation's ``backoff_max`` (default ``RETRY_BACKOFF_MAX``).
    """
    cap = settings.retry_backoff_max if cap is None else cap
    ceiling = min(settings.retry_backoff_base * 2 ** (attempt - 1), cap)
    wait = ceiling / 2 + random.uniform(0, ceiling / 2)
    if server_wait is not None:
        wait = max(wait, min(server_wait, cap))
    return wait
