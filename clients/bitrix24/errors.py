"""Bitrix24 errors, keyed by the portal's error code (compared case-insensitively).

Every class also inherits one category of :mod:`clients.errors`, so the task layer chooses a retry
policy without knowing Bitrix24::

    Bitrix24Error (IntegrationError)
    ├── Bitrix24RateLimitedError     (RateLimitedError)  QUERY_LIMIT_EXCEEDED, any status: refused
    │                                                    before running, always safe to retry
    ├── Bitrix24OperationTimeError   (RetryLaterError)   429 OPERATION_TIME_LIMIT: park this method
    │                                                    until ``operating_reset_at`` (``retry_after``)
    ├── Bitrix24ServerError          (RetryLaterError)   5xx / network failure on a READ
    │   └── Bitrix24ConnectError                         the request never left (connect failed)
    ├── Bitrix24AuthError            (ReauthenticateError) expired_token, invalid_token, NO_AUTH_FOUND
    ├── Bitrix24OverloadError        (DoNotRetryError)   OVERLOAD_LIMIT: manual block by support
    ├── Bitrix24AccessError          (DoNotRetryError)   insufficient_scope, ACCESS_DENIED,
    │                                                    WRONG_AUTH_TYPE, INVALID_CREDENTIALS,
    │                                                    PORTAL_DELETED, auth-server invalid_grant …
    ├── Bitrix24InputError           (FixInputError)     ERROR_ARGUMENT, ERROR_CORE, empty-code 400s …
    │   └── Bitrix24NotFoundError    (NotFoundError)     ERROR_METHOD_NOT_FOUND, 400 "Not found"
    └── Bitrix24AmbiguousWriteError  (LookUpFirstError)  timeout or 5xx on a WRITE: it may have
                                                         committed; look the record up first

The client never retries a write by itself; reads and rate-limit refusals are the caller's to retry.
Messages and bodies never contain the webhook secret or tokens (see :func:`redact`).
"""

from __future__ import annotations

import re
from typing import Any

from clients.errors import (
    DoNotRetryError,
    FixInputError,
    IntegrationError,
    LookUpFirstError,
    NotFoundError,
    RateLimitedError,
    ReauthenticateError,
    RetryLaterError,
)


class Bitrix24Error(IntegrationError):
    service = "bitrix24"


class Bitrix24RateLimitedError(Bitrix24Error, RateLimitedError):
    """QUERY_LIMIT_EXCEEDED: the portal refused before running the call."""


class Bitrix24OperationTimeError(Bitrix24Error, RetryLaterError):
    """OPERATION_TIME_LIMIT: this method's time budget is spent; others still work."""

    @property
    def operating_reset_at(self) -> float | None:
        body = self.body if isinstance(self.body, dict) else {}
        value = (body.get("time") or {}).get("operating_reset_at") if isinstance(body, dict) else None
        return float(value) if value is not None else None


class Bitrix24ServerError(Bitrix24Error, RetryLaterError):
    """A read failed on the server or the network; repeating it is harmless."""


class Bitrix24ConnectError(Bitrix24ServerError):
    """The connection could not be opened, so nothing was sent (safe even for writes)."""


class Bitrix24AuthError(Bitrix24Error, ReauthenticateError):
    """The token or webhook secret was rejected or has expired."""


class Bitrix24OverloadError(Bitrix24Error, DoNotRetryError):
    """OVERLOAD_LIMIT: blocked by Bitrix24 support; retry loops make it worse."""


class Bitrix24AccessError(Bitrix24Error, DoNotRetryError):
    """The credentials lack the right, scope or auth type for this method."""


class Bitrix24InputError(Bitrix24Error, FixInputError):
    """The request is invalid; retrying the same call cannot succeed."""


class Bitrix24NotFoundError(Bitrix24InputError, NotFoundError):
    """The method or the addressed record does not exist."""


class Bitrix24AmbiguousWriteError(Bitrix24Error, LookUpFirstError):
    """A write timed out or hit a 5xx: it may have committed. Look the record up before any retry."""


_BY_CODE: dict[str, type[Bitrix24Error]] = {
    "query_limit_exceeded": Bitrix24RateLimitedError,
    "operation_time_limit": Bitrix24OperationTimeError,
    "overload_limit": Bitrix24OverloadError,
    "expired_token": Bitrix24AuthError,
    "invalid_token": Bitrix24AuthError,
    "no_auth_found": Bitrix24AuthError,
    "insufficient_scope": Bitrix24AccessError,
    "access_denied": Bitrix24AccessError,
    "wrong_auth_type": Bitrix24AccessError,
    "invalid_credentials": Bitrix24AccessError,
    "portal_deleted": Bitrix24AccessError,
    "payment_required": Bitrix24AccessError,
    "invalid_client": Bitrix24AccessError,
    "invalid_grant": Bitrix24AccessError,
    "invalid_scope": Bitrix24AccessError,
    "error_method_not_found": Bitrix24NotFoundError,
    "not_found": Bitrix24NotFoundError,
    "owner_not_found": Bitrix24NotFoundError,
}

_NOT_FOUND_TEXT = re.compile(r"\bnot found\b", re.IGNORECASE)
_ACCESS_TEXT = re.compile(r"^access denied", re.IGNORECASE)


def error_class(code: str, status: int | None, description: str, *, write: bool) -> type[Bitrix24Error]:
    """Pick the class for a portal error. The code decides first; the status only when it is unknown."""
    known = _BY_CODE.get(code.lower())
    if known is not None:
        return known
    if not code:
        # Legacy crm.contact.* send 400 with an empty code and only a description.
        if _NOT_FOUND_TEXT.search(description):
            return Bitrix24NotFoundError
        if _ACCESS_TEXT.search(description):
            return Bitrix24AccessError
    if status is not None and status >= 500:
        return Bitrix24AmbiguousWriteError if write else Bitrix24ServerError
    if status == 401:
        return Bitrix24AuthError
    if status == 403:
        return Bitrix24AccessError
    if status == 404:
        return Bitrix24NotFoundError
    return Bitrix24InputError


_WEBHOOK_SECRET = re.compile(r"(/rest/\d+/)[^/\s?'\"]+")
_AUTH_PARAM = re.compile(r"((?:auth|access_token|refresh_token|client_secret|code)=)[^&\s'\"]+")


def redact(text: str, *secrets: str | None) -> str:
    """Remove webhook secrets, tokens and the given literal secrets from ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _WEBHOOK_SECRET.sub(r"\1***", text)
    return _AUTH_PARAM.sub(r"\1***", text)


def from_response(
    method: str, status: int | None, body: Any, *, write: bool, retry_after: float | None = None
) -> Bitrix24Error:
    """Build the typed error for an error answer ``body`` (a dict when it was JSON)."""
    code = ""
    description = ""
    if isinstance(body, dict):
        code = str(body.get("error") or "")
        description = str(body.get("error_description") or "")
    elif isinstance(body, str | bytes):
        description = (body.decode("utf-8", "replace") if isinstance(body, bytes) else body)[:200]
    cls = error_class(code, status, description, write=write)
    if cls is Bitrix24OperationTimeError and retry_after is None and isinstance(body, dict):
        reset = (
            (body.get("time") or {}).get("operating_reset_at") if isinstance(body.get("time"), dict) else None
        )
        if reset is not None:
            import time

            retry_after = max(0.0, float(reset) - time.time())
    label = code or "(no code)"
    return cls(
        f"{method}: {label} {description}".strip(),
        status=status,
        code=code or None,
        body=body,
        retry_after=retry_after,
        method=method,
    )


__all__ = [
    "Bitrix24AccessError",
    "Bitrix24AmbiguousWriteError",
    "Bitrix24AuthError",
    "Bitrix24ConnectError",
    "Bitrix24Error",
    "Bitrix24InputError",
    "Bitrix24NotFoundError",
    "Bitrix24OperationTimeError",
    "Bitrix24OverloadError",
    "Bitrix24RateLimitedError",
    "Bitrix24ServerError",
    "error_class",
    "from_response",
    "redact",
]
