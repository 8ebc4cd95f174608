"""Where the rotating OAuth pair lives. Bitrix24 rotates the refresh token on every refresh, so the
new pair must be persisted before it is used, and every process must read the same pair."""

from __future__ import annotations

import threading
from typing import Protocol

import redis

from schemas.bitrix24 import OAuthToken


class TokenStore(Protocol):
    """Pluggable persistence of the current OAuth pair."""

    def load(self) -> OAuthToken | None: ...

    def save(self, token: OAuthToken) -> None: ...


class MemoryTokenStore:
    """Single-process store (tests, one-off scripts)."""

    def __init__(self, token: OAuthToken | None = None) -> None:
        self._token = token
        self._lock = threading.Lock()

    def load(self) -> OAuthToken | None:
        with self._lock:
            return self._token

    def save(self, token: OAuthToken) -> None:
        with self._lock:
            self._token = token


class RedisTokenStore:
    """The pair as JSON under ``key`` (the whole Redis key), shared by every worker of the portal."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self._redis = client
        self.key = key

    def load(self) -> OAuthToken | None:
        raw = self._redis.get(self.key)
        return OAuthToken.model_validate_json(raw) if raw else None

    def save(self, token: OAuthToken) -> None:
        self._redis.set(self.key, token.model_dump_json())


__all__ = ["MemoryTokenStore", "RedisTokenStore", "TokenStore"]
