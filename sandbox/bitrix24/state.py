"""Everything the simulated portal remembers, behind one re-entrant lock."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any


class ApiError(Exception):
    """An error answer ``{"error": code, "error_description": text}`` with its HTTP status."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status


@dataclass
class Context:
    """Who is calling: the webhook or the OAuth app, as which user, from which address."""

    identity: str
    oauth: bool
    user_id: int
    source: str


@dataclass
class ListResult:
    rows: list[Any]
    total: int
    next: int | None


@dataclass
class OAuthApp:
    client_id: str
    client_secret: str
    application_token: str
    member_id: str
    scope: str = "crm,im,imopenlines,imconnector,placement,user"
    redirect_uri: str | None = None


@dataclass
class OAuthState:
    app: OAuthApp
    access_ttl: float = 3600.0
    access: dict[str, float] = field(default_factory=dict)  # token -> expires at
    refresh: dict[str, float] = field(default_factory=dict)  # live refresh tokens -> expires at
    codes: dict[str, float] = field(default_factory=dict)
    refreshes: int = 0

    def issue(self) -> tuple[str, str, float]:
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        expires = time.time() + self.access_ttl
        self.access[access] = expires
        self.refresh[refresh] = time.time() + 180 * 86400
        return access, refresh, expires


@dataclass
class Portal:
    domain: str
    webhook_user: int
    webhook_secret: str
    oauth: OAuthState
    lock: threading.RLock = field(default_factory=threading.RLock)
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    userfields: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    chats: dict[int, dict[str, Any]] = field(default_factory=dict)
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    active: dict[tuple[str, str], bool] = field(default_factory=dict)
    connector_data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    external_chats: dict[tuple[str, str, str], int] = field(default_factory=dict)
    external_users: dict[tuple[str, str], int] = field(default_factory=dict)
    handlers: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    # imconnector.send.messages elements refused one by one (the call still answers SUCCESS):
    # text substring -> how many more elements containing it to refuse (the "refuse_element" fault)
    refused_texts: dict[str, int] = field(default_factory=dict)

    def refuses(self, text: str) -> bool:
        """Whether to refuse an element with ``text`` now (consumes one of its fault's count)."""
        with self.lock:
            for match, left in list(self.refused_texts.items()):
                if match and match in text and left > 0:
                    self.refused_texts[match] = left - 1
                    if left <= 1:
                        del self.refused_texts[match]
                    return True
            return False

    def __post_init__(self) -> None:
        self.reset()

    def next_id(self, kind: str) -> int:
        with self.lock:
            self.counters[kind] = self.counters.get(kind, 0) + 1
            return self.counters[kind]

    def reset(self) -> None:
        """Forget every record (the OAuth app and its tokens stay valid)."""
        with self.lock:
            for store in (
                self.contacts,
                self.userfields,
                self.chats,
                self.connectors,
                self.active,
                self.connector_data,
                self.external_chats,
                self.external_users,
                self.counters,
                self.refused_texts,
            ):
                store.clear()
            self.timeline.clear()
            self.handlers.clear()
            self.calls.clear()
            self.lines.clear()
            self.lines["1"] = {"ID": "1", "LINE_NAME": "Open line", "ACTIVE": "Y"}
            self.counters["user"] = 100  # portal users 1..100 exist; external users get ids after

    def log_call(
        self,
        method: str,
        status: int,
        code: str,
        ctx: Context | None,
        batch: str | None = None,
        host: str | None = None,
    ) -> None:
        with self.lock:
            self.calls.append(
                {
                    "method": method,
                    "status": status,
                    "error": code,
                    "identity": ctx.identity if ctx else None,
                    "batch": batch,
                    "host": host,
                    "ts": time.time(),
                }
            )

    def call_counts(self, *, inner: bool = False) -> dict[str, int]:
        """HTTP requests per method, or (``inner``) commands run inside batches per method."""
        with self.lock:
            counts: dict[str, int] = {}
            for call in self.calls:
                if (call["batch"] is not None) == inner:
                    counts[call["method"]] = counts.get(call["method"], 0) + 1
            return counts

    def summary(self) -> dict[str, Any]:
        with self.lock:
            http = [c for c in self.calls if c["batch"] is None]
            return {
                "requests": len(http),
                "rate_limited": sum(1 for c in http if c["error"] == "QUERY_LIMIT_EXCEEDED"),
                "counts": self.call_counts(),
                "inner_counts": self.call_counts(inner=True),
                "oauth_refreshes": self.oauth.refreshes,
            }
