"""The operator token: password grant with ``client_id=machine``, cached until shortly before expiry.

The token endpoint is called directly on the session, never through the request path that
re-authenticates on 401, so a rejected login cannot recurse (a quirk of the upstream client).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests
from loguru import logger
from pydantic import ValidationError

from clients.rosdomofon.errors import RosDomofonAuthError, RosDomofonError, RosDomofonProtocolError
from clients.rosdomofon.transport import error_from_exception, error_from_response
from schemas.rosdomofon import AuthResponse

TOKEN_PATH = "/authserver-service/oauth/token"
CLIENT_ID = "machine"
MAX_MARGIN = 60.0  # [LP] refreshes at expires_in - 60 s


def refresh_margin(expires_in: float) -> float:
    """Refresh ``MAX_MARGIN`` seconds early, but never more than a tenth of a short lifetime."""
    return min(MAX_MARGIN, expires_in * 0.1)


class TokenManager:
    """Owns the access token; thread-safe so one client can serve several threads."""

    def __init__(
        self,
        session: requests.Session,
        url: str,
        username: str,
        password: str,
        *,
        timeout: tuple[float, float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._url = url
        self._username = username
        self._password = password
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.response: AuthResponse | None = None

    @property
    def secrets(self) -> list[str]:
        """Values that must never appear in logs or error text."""
        return [s for s in (self._password, self._token) if s]

    def token(self) -> str:
        """A valid token, fetching a new one when none is cached or it is about to expire."""
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._fetch()
            assert self._token is not None
            return self._token

    def renew(self, rejected: str | None) -> str:
        """A fresh token after a 401; another thread may already have replaced ``rejected``."""
        with self._lock:
            if self._token is None or self._token == rejected:
                self._fetch()
            assert self._token is not None
            return self._token

    def authenticate(self) -> AuthResponse:
        with self._lock:
            return self._fetch()

    def _fetch(self) -> AuthResponse:
        form = {
            "grant_type": "password",
            "client_id": CLIENT_ID,
            "username": self._username,
            "password": self._password,
        }
        logger.debug("rosdomofon authenticate: password grant for {}", self._username)
        try:
            resp = self._session.post(self._url, data=form, timeout=self._timeout)
        except requests.RequestException as exc:
            failure = error_from_exception(exc, operation="authenticate", method="POST", secrets=self.secrets)
            logger.error("rosdomofon authenticate failed: {}", failure)
            raise failure from exc
        if not resp.ok:
            err: RosDomofonError = error_from_response(resp, operation="authenticate", secrets=self.secrets)
            if 400 <= resp.status_code < 500 and resp.status_code not in (404, 429):
                # Rejected credentials (Spring answers 400 invalid_grant or 401): re-logging in cannot help
                # until the credentials change, but the category is "auth" for the task layer.
                err = RosDomofonAuthError(err.message, status=err.status, code=err.code, body=err.body)
            logger.error("rosdomofon authenticate failed: {}", err)
            raise err
        try:
            auth = AuthResponse.model_validate(resp.json())
        except (ValueError, ValidationError) as exc:
            raise RosDomofonProtocolError(
                f"rosdomofon authenticate: unusable token response ({type(exc).__name__})",
                status=resp.status_code,
            ) from None
        self._token = auth.access_token
        self._refresh_at = self._clock() + auth.expires_in - refresh_margin(auth.expires_in)
        self.response = auth
        logger.info("rosdomofon authenticated; token valid for {}s", auth.expires_in)
        return auth


__all__ = ["CLIENT_ID", "TOKEN_PATH", "TokenManager", "refresh_margin"]
