"""The error categories every client speaks, split by what the caller should do.

Each client (``clients.rosdomofon``, ``clients.bitrix24``, ``clients.kafka``) defines its own tree
whose classes also inherit one of these categories, so the task layer can pick a retry policy
without knowing which service failed::

    IntegrationError                 base: service, status, code, body (truncated, secret-free)
    ├── RetryLaterError              transient: 5xx, timeouts, connection errors; ``retry_after``
    │   └── RateLimitedError         the server said "slow down" (429/503 rate limit)
    ├── ReauthenticateError          credentials expired or rejected: re-authenticate once
    ├── FixInputError                the request is wrong: never retry, dead-letter it
    │   └── NotFoundError            the addressed record does not exist
    ├── LookUpFirstError             ambiguous write: it may have committed; look the record up
    └── DoNotRetryError              refused for good (access, overload block, scope)
"""

from __future__ import annotations

from typing import Any

BODY_LIMIT = 2000


class IntegrationError(Exception):
    """Base of every error a client raises; carries what an operator needs to diagnose it."""

    service: str = "unknown"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        if isinstance(body, str | bytes) and len(body) > BODY_LIMIT:
            body = body[:BODY_LIMIT]
        self.body = body
        self.retry_after = retry_after
        self.method = method

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after:g}s")
        return " ".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps errors picklable across process boundaries (billiard, result backends).
        return (
            _rebuild,
            (type(self), self.message, self.status, self.code, self.body, self.retry_after, self.method),
        )


def _rebuild(
    cls: type[IntegrationError],
    message: str,
    status: int | None,
    code: str | None,
    body: Any,
    retry_after: float | None,
    method: str | None,
) -> IntegrationError:
    return cls(message, status=status, code=code, body=body, retry_after=retry_after, method=method)


class RetryLaterError(IntegrationError):
    """Transient failure; the same call can succeed later (after ``retry_after`` if set)."""


class RateLimitedError(RetryLaterError):
    """The server refused the call before running it because of a rate limit: always safe to retry."""


class ReauthenticateError(IntegrationError):
    """Credentials were rejected or expired; get a new token and try once more."""


class FixInputError(IntegrationError):
    """The request itself is wrong; retrying cannot help."""


class NotFoundError(FixInputError):
    """The addressed record does not exist."""


class LookUpFirstError(IntegrationError):
    """A write timed out or failed ambiguously: it may have committed. Look the record up before retrying."""


class DoNotRetryError(IntegrationError):
    """Refused for good (access denied, manual overload block, missing scope): a human must act."""


__all__ = [
    "DoNotRetryError",
    "FixInputError",
    "IntegrationError",
    "LookUpFirstError",
    "NotFoundError",
    "RateLimitedError",
    "ReauthenticateError",
    "RetryLaterError",
]
