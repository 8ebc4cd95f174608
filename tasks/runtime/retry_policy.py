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
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

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
from tasks.settings import Settings


class WaitingError(RetryLaterError):
    """The task must wait (its turn), not fail: retried after ``retry_after``, outside every budget.

    The raiser bounds how long it waits (it gives up waiting and goes on); the policy never counts
    these retries, so a message that waited for its predecessor keeps its whole retry budget.
    """

    service = "rdb24"


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


@dataclass(frozen=True)
class Decision:
    cause: Cause
    retry: bool
    countdown: float = 0.0
    exhausted: bool = False  # retryable, but the budget is spent


def decide(exc: BaseException, counts: dict[str, int], settings: Settings) -> Decision:
    """Retry or give up, and after how long. ``counts`` are retries so far by cause."""
    cause = classify(exc)
    if cause not in RETRYABLE:
        return Decision(cause, retry=False)
    server_wait = getattr(exc, "retry_after", None)
    if cause is Cause.WAITING:
        wait = WAIT_DEFAULT if server_wait is None else server_wait
        return Decision(cause, retry=True, countdown=min(max(wait, 0.0), settings.rate_limit_wait_max))
    if cause is Cause.RATE_LIMITED:
        done = counts.get(Cause.RATE_LIMITED, 0)
        if done >= settings.max_rate_limit_retries:
            return Decision(cause, retry=False, exhausted=True)
        wait = server_wait if server_wait is not None else settings.retry_backoff_base
        wait = min(max(wait, 0.0), settings.rate_limit_wait_max)
        # A little spread so tasks told "wait 1 s" together do not all return in the same instant.
        return Decision(cause, retry=True, countdown=wait + random.uniform(0, min(1.0, wait * 0.1 + 0.05)))
    done = sum(v for k, v in counts.items() if k not in UNCOUNTED)
    if done >= settings.max_retries:
        return Decision(cause, retry=False, exhausted=True)
    return Decision(cause, retry=True, countdown=backoff(done + 1, settings, server_wait))


def backoff(attempt: int, settings: Settings, server_wait: float | None = None) -> float:
    """Equal-jitter exponential backoff: half fixed, half random, capped; at least the server's wait."""
    ceiling = min(settings.retry_backoff_base * 2 ** (attempt - 1), settings.retry_backoff_max)
    wait = ceiling / 2 + random.uniform(0, ceiling / 2)
    if server_wait is not None:
        wait = max(wait, min(server_wait, settings.retry_backoff_max))
    return wait
