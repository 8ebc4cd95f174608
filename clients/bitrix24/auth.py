"""How a call is authenticated: an incoming webhook URL, or an OAuth app's rotating token pair.

OAuth refresh happens on a 401 ``expired_token``/``invalid_token`` only (never on a schedule), and is
single-flight: one thread per process (a lock) and one process per app (a Redis lock). Whoever gets
the lock re-reads the store first: if the access token already differs from the one that failed,
someone else refreshed and no second refresh is made (a second one would burn the rotated refresh
token and lock everybody else out).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import redis
from loguru import logger

from clients.bitrix24.config import Bitrix24Config, token_url
from clients.bitrix24.errors import Bitrix24AccessError, Bitrix24AuthError, from_response
from clients.bitrix24.token_store import MemoryTokenStore, TokenStore
from clients.bitrix24.transport import Transport
from schemas.bitrix24 import OAuthToken


class Auth(Protocol):
    oauth: bool

    def prepare(self, method: str, params: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        """Return (url, body, credential used) for ``method``."""
        ...

    def refresh(self, failed_credential: str) -> None: ...

    def secrets(self) -> tuple[str, ...]: ...


class WebhookAuth:
    """The secret lives in the URL path; nothing to refresh."""

    oauth = False

    def __init__(self, webhook_url: str) -> None:
        self._base = webhook_url if webhook_url.endswith("/") else webhook_url + "/"

    def prepare(self, method: str, params: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        return f"{self._base}{method}.json", params, ""

    def refresh(self, failed_credential: str) -> None:
        raise Bitrix24AuthError("the webhook secret was rejected; a webhook cannot be refreshed")

    def secrets(self) -> tuple[str, ...]:
        return (self._base.rstrip("/").rsplit("/", 1)[-1],)


class OAuthAuth:
    """Access token in the ``auth`` body field; rotated pair persisted through a :class:`TokenStore`."""

    oauth = True

    def __init__(
        self,
        config: Bitrix24Config,
        transport: Transport,
        *,
        store: TokenStore | None = None,
        redis_client: redis.Redis | None = None,
    ) -> None:
        self._config = config
        self._transport = transport
        self._store = store or MemoryTokenStore()
        self._redis = redis_client
        self._thread_lock = threading.Lock()
        self.refreshes = 0  # refreshes THIS process made (observability and tests)
        seed_access = config.access_token.get_secret_value() if config.access_token else ""
        seed_refresh = config.refresh_token.get_secret_value() if config.refresh_token else ""
        if self._store.load() is None and (seed_access or seed_refresh):
            self._store.save(
                OAuthToken(
                    access_token=seed_access,
                    refresh_token=seed_refresh,
                    client_endpoint=config.client_endpoint,
                    server_endpoint=config.server_endpoint,
                )
            )

    def _current(self) -> OAuthToken:
        token = self._store.load()
        if token is None:
            raise Bitrix24AuthError("no OAuth token: install the app or configure the initial tokens")
        return token

    def prepare(self, method: str, params: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        token = self._current()
        if not token.access_token and token.refresh_token:
            self.refresh("")  # configured with a refresh token only: get an access token first
            token = self._current()
        endpoint = token.client_endpoint or self._config.client_endpoint or ""
        if not endpoint.endswith("/"):
            endpoint += "/"
        return f"{endpoint}{method}.json", {**params, "auth": token.access_token}, token.access_token

    def refresh(self, failed_credential: str) -> None:
        with self._thread_lock:
            lock = self._process_lock()
            if lock is not None and not lock.acquire(blocking=True, blocking_timeout=30):
                raise Bitrix24AuthError("timed out waiting for another process to refresh the OAuth token")
            try:
                current = self._current()
                if current.access_token != failed_credential:
                    return  # someone else already refreshed
                self._store.save(self._exchange(current))
                self.refreshes += 1
            finally:
                if lock is not None:
                    lock.release()

    def _process_lock(self) -> Any:
        if self._redis is None:
            return None
        key = self._config.redis_keys.oauth_refresh_lock(self._config.client_id or "")
        return self._redis.lock(key, timeout=60)

    def _exchange(self, current: OAuthToken) -> OAuthToken:
        secret = self._config.client_secret.get_secret_value() if self._config.client_secret else ""
        url = token_url(current.server_endpoint or self._config.server_endpoint)
        params = {
            "grant_type": "refresh_token",
            "client_id": self._config.client_id,
            "client_secret": secret,
            "refresh_token": current.refresh_token,
        }
        reply = self._transport.get(url, params, "oauth.token", secrets=(secret, current.refresh_token))
        if reply.status != 200 or not isinstance(reply.body, dict) or "access_token" not in reply.body:
            error = from_response("oauth.token", reply.status, reply.body, write=False)
            if not isinstance(error, Bitrix24AccessError | Bitrix24AuthError):
                raise error
            raise Bitrix24AccessError(
                f"OAuth refresh refused ({error.code}); re-install or re-authorize the app",
                status=reply.status,
                code=error.code,
                body=reply.body,
                method="oauth.token",
            )
        token = OAuthToken.model_validate(reply.body)
        if token.expires is None:
            token.expires = int(time.time()) + token.expires_in
        if token.server_endpoint is None:
            token.server_endpoint = current.server_endpoint
        logger.info("bitrix24 OAuth token refreshed for {}", token.client_endpoint)
        return token

    def secrets(self) -> tuple[str, ...]:
        token = self._store.load()
        secret = self._config.client_secret.get_secret_value() if self._config.client_secret else ""
        if token is None:
            return (secret,)
        return (secret, token.access_token, token.refresh_token)


__all__ = ["Auth", "OAuthAuth", "WebhookAuth"]
