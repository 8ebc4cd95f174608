"""One HTTP exchange with the portal, and the one place ``requests`` exceptions are translated.

Nothing above this module sees a ``requests`` exception, and nothing raised here carries a URL with
the webhook secret: messages pass through :func:`errors.redact` and the foreign exception is not
chained (its text holds the URL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from loguru import logger

from clients.bitrix24.errors import (
    Bitrix24AmbiguousWriteError,
    Bitrix24ConnectError,
    Bitrix24Error,
    Bitrix24InputError,
    Bitrix24ServerError,
    redact,
)


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # dict when the answer was JSON, else the text
    headers: dict[str, str]  # lower-cased names


def translate(
    exc: requests.RequestException, method: str, *, write: bool, secrets: tuple[str, ...]
) -> Bitrix24Error:
    """Map every ``requests`` failure to the error tree by what the caller may safely do next.

    A request that never left (connect failure/timeout) is safe to repeat; one that may have reached
    the portal is ambiguous for a write and merely transient for a read.
    """
    name = type(exc).__name__
    text = redact(f"{method}: {name}: {exc}", *secrets)
    if isinstance(
        exc, requests.ConnectTimeout | requests.exceptions.ProxyError | requests.exceptions.SSLError
    ):
        return Bitrix24ConnectError(text, method=method)
    if isinstance(exc, requests.ConnectionError) and _never_sent(exc):
        return Bitrix24ConnectError(text, method=method)
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.InvalidSchema
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidHeader
        | requests.exceptions.URLRequired
        | requests.exceptions.InvalidJSONError
        | requests.exceptions.TooManyRedirects,
    ):
        return Bitrix24InputError(text, method=method)
    if write:
        return Bitrix24AmbiguousWriteError(text, method=method)
    return Bitrix24ServerError(text, method=method)


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when urllib3 failed to open the connection (refused, DNS), so no bytes were sent."""
    import urllib3.exceptions as u3

    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 6:
        if isinstance(cause, u3.NewConnectionError | u3.NameResolutionError | ConnectionRefusedError):
            return True
        reason = getattr(cause, "reason", None)
        cause = reason if isinstance(reason, BaseException) else (cause.__cause__ or cause.__context__)
        seen += 1
    return False


class Transport:
    """POSTs JSON with the configured timeouts and User-Agent over one pooled session."""

    def __init__(self, *, timeout: float, connect_timeout: float, user_agent: str) -> None:
        self.session = requests.Session()
        self.session.headers.update(
            {"User-Agent": user_agent, "Accept": "application/json", "Content-Type": "application/json"}
        )
        self.timeout = (connect_timeout, timeout)

    def post(
        self, url: str, payload: dict[str, Any], method: str, *, write: bool, secrets: tuple[str, ...]
    ) -> Reply:
        try:
            data = json.dumps(payload, default=str).encode()  # bytes: headers and body in one segment
            # Never follow redirects here: requests would turn a POST into a bodiless GET.
            response = self.session.post(url, data=data, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            error = translate(exc, method, write=write, secrets=secrets)
            logger.warning("bitrix24 {} failed: {}", method, error)
            raise error from None
        return _reply(response)

    def get(self, url: str, params: dict[str, Any], method: str, *, secrets: tuple[str, ...]) -> Reply:
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            error = translate(exc, method, write=False, secrets=secrets)
            raise error from None
        return _reply(response)

    def close(self) -> None:
        self.session.close()


def _reply(response: requests.Response) -> Reply:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:2000]
    return Reply(
        status=response.status_code, body=body, headers={k.lower(): v for k, v in response.headers.items()}
    )
