"""Operator tokens: issued by the password grant, valid for a configurable lifetime, expirable on demand.

The real lifetime is unknown (the 3600 in upstream docs is an illustration), hence a setting.
"""

from __future__ import annotations

import secrets
import threading
import time


class TokenStore:
    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._expires: dict[str, float] = {}
        self.issued = 0

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._expires[token] = time.monotonic() + self.lifetime
            self.issued += 1
        return token

    def status(self, token: str) -> str:
        """``valid``, ``expired`` or ``invalid``."""
        with self._lock:
            expires = self._expires.get(token)
        if expires is None:
            return "invalid"
        return "valid" if time.monotonic() < expires else "expired"

    def expire_all(self) -> int:
        with self._lock:
            for token in self._expires:
                self._expires[token] = 0.0
            return len(self._expires)


__all__ = ["TokenStore"]
