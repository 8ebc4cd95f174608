"""HTTP plumbing for the RosDomofon client: the pooled session and the one place errors are mapped.

Only idempotent reads (GET) are retried by urllib3; writes are never repeated blindly, because a
repeated ``POST /accounts`` or ``POST /messages`` could create a second account or send twice.
429 is never retried here: it surfaces with its ``retry_after`` so the task layer can schedule.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import requests
from requests import exceptions as rex
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from clients.rosdomofon.errors import (
    RosDomofonAmbiguousWriteError,
    RosDomofonAuthError,
    RosDomofonConnectionError,
    RosDomofonError,
    RosDomofonForbiddenError,
    RosDomofonInvalidRequestError,
    RosDomofonNotFoundError,
    RosDomofonProtocolError,
    RosDomofonRateLimitedError,
    RosDomofonTimeoutError,
    RosDomofonTransientError,
)

IDEMPOTENT_READS = frozenset({"GET"})
RETRY_STATUSES = (500, 502, 503, 504)


def build_session(*, read_retries: int = 2, backoff: float = 0.2, pool_size: int = 10) -> requests.Session:
    """A pooled session whose adapter retries only GETs (and connection failures before sending)."""
    retry = Retry(
        total=read_retries,
        connect=read_retries,
        read=read_retries,
        status=read_retries,
        other=0,
        allowed_methods=IDEMPOTENT_READS,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
        backoff_max=5.0,
        raise_on_status=False,
        respect_retry_after_header=False,  # else urllib3 retries 429s itself, hiding them from the caller
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update({"Accept": "application/json"})
    return session


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header given as seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), tz=UTC)
    return max(0.0, (when - current).total_seconds())


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (password, token) in ``text`` with ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _body(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _server_message(body: Any) -> str | None:
    # The error body shape is unknown; Spring and OAuth spellings are the likely ones.
    if isinstance(body, dict):
        for key in ("message", "error_description", "errorMessage", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        return None
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return None


def _scrub_body(body: Any, secrets: Iterable[str]) -> Any:
    secrets = list(secrets)
    if isinstance(body, str):
        return scrub(body, secrets)
    try:
        return json.loads(scrub(json.dumps(body, ensure_ascii=False), secrets))
    except (TypeError, ValueError):
        return None


def error_from_response(
    response: requests.Response, *, operation: str, secrets: Iterable[str] = ()
) -> RosDomofonError:
    """Map a non-2xx response to the error class whose category says what to do next."""
    secrets = list(secrets)
    status = response.status_code
    body = _scrub_body(_body(response), secrets)
    detail = _server_message(body)
    message = f"rosdomofon {operation} failed: HTTP {status}" + (f": {detail}" if detail else "")
    message = scrub(message, secrets)
    method = response.request.method if response.request is not None else None
    kwargs: dict[str, Any] = {"status": status, "body": body, "method": method}
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        kwargs["code"] = body["error"]
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RosDomofonRateLimitedError(message, retry_after=retry_after, **kwargs)
    if status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RosDomofonTransientError(message, retry_after=retry_after, **kwargs)
    if status == 401:
        return RosDomofonAuthError(message, **kwargs)
    if status == 403:
        return RosDomofonForbiddenError(message, **kwargs)
    if status == 404:
        return RosDomofonNotFoundError(message, **kwargs)
    return RosDomofonInvalidRequestError(message, **kwargs)


# Most specific first is not required: the lookup walks the exception's MRO.
_FOREIGN: dict[type[BaseException], type[RosDomofonError]] = {
    rex.ConnectTimeout: RosDomofonTimeoutError,
    rex.ReadTimeout: RosDomofonTimeoutError,
    rex.Timeout: RosDomofonTimeoutError,
    rex.SSLError: RosDomofonConnectionError,
    rex.ProxyError: RosDomofonConnectionError,
    rex.ConnectionError: RosDomofonConnectionError,
    rex.ChunkedEncodingError: RosDomofonConnectionError,
    rex.ContentDecodingError: RosDomofonProtocolError,
    rex.RetryError: RosDomofonTransientError,
    rex.TooManyRedirects: RosDomofonProtocolError,
    rex.InvalidURL: RosDomofonProtocolError,
    rex.InvalidProxyURL: RosDomofonProtocolError,
    rex.InvalidSchema: RosDomofonProtocolError,
    rex.MissingSchema: RosDomofonProtocolError,
    rex.URLRequired: RosDomofonProtocolError,
    rex.InvalidHeader: RosDomofonProtocolError,
    rex.InvalidJSONError: RosDomofonProtocolError,
    rex.JSONDecodeError: RosDomofonProtocolError,
    rex.StreamConsumedError: RosDomofonProtocolError,
    rex.UnrewindableBodyError: RosDomofonProtocolError,
    rex.HTTPError: RosDomofonTransientError,
    rex.RequestException: RosDomofonTransientError,
}


def error_class_for(exc: BaseException) -> type[RosDomofonError] | None:
    for cls in type(exc).__mro__:
        if cls in _FOREIGN:
            return _FOREIGN[cls]
    return None


def _timed_out_reading(exc: BaseException) -> bool:
    """A read timeout, even when urllib3 wrapped it (retries spent -> ``ConnectionError(MaxRetryError)``)."""
    if isinstance(exc, rex.ReadTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, ReadTimeoutError)


def error_from_exception(
    exc: BaseException, *, operation: str, method: str, secrets: Iterable[str] = ()
) -> RosDomofonError:
    """Translate a ``requests`` exception; a read timeout of a write becomes an ambiguous write."""
    cls = error_class_for(exc) or RosDomofonTransientError
    if _timed_out_reading(exc):
        # The request went out; a write may have committed, so it must be looked up, not repeated.
        cls = RosDomofonTimeoutError if method in IDEMPOTENT_READS else RosDomofonAmbiguousWriteError
    reason = scrub(f"{type(exc).__name__}: {exc}", list(secrets))[:300]
    return cls(f"rosdomofon {operation} failed: {reason}", method=method)


__all__ = [
    "build_session",
    "error_class_for",
    "error_from_exception",
    "error_from_response",
    "parse_retry_after",
    "scrub",
]
