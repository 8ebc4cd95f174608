"""Injected faults and the call log: what tests use to see and shape the simulator's behaviour.

RosDomofon is not known to rate-limit (no 429 in any public source), so 429 exists here only as an
injected fault. Faults apply to the operator API (and, when ``include_token`` is set, to the token
endpoint), never to the ``/_sandbox`` control API.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

TOKEN_PATH = "/authserver-service/oauth/token"


@dataclass
class FaultSettings:
    latency: float = 0.0  # seconds added to every matching call
    error_rate: float = 0.0  # probability of answering ``error_status`` instead
    error_status: int = 500
    fail_next: int = 0  # the next K matching calls answer ``fail_status``
    fail_status: int = 503
    # the next K matching calls are carried out, then answered ``fail_status`` (committed, answer lost:
    # what a gateway timeout in front of the API looks like to the client)
    commit_then_fail_next: int = 0
    rate_limit_next: int = 0  # the next K matching calls answer 429 with ``retry_after``
    retry_after: str = "1"  # seconds or an HTTP date, sent verbatim as Retry-After
    unauthorized_next: int = (
        0  # the next K calls answer 401 invalid_token (echoing the token, as Spring does)
    )
    include_token: bool = False  # also apply to the token endpoint
    path_prefix: str | None = None  # only calls whose path starts with this


@dataclass(frozen=True)
class Decision:
    latency: float
    status: int | None  # None: serve normally
    retry_after: str | None = None
    after_commit: bool = False  # serve, then replace the answer with ``status``


class Faults:
    """Thread-safe fault settings; each call draws one :class:`Decision`."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.settings = FaultSettings()

    def update(self, **changes: Any) -> FaultSettings:
        with self._lock:
            unknown = set(changes) - set(asdict(self.settings))
            if unknown:
                raise ValueError(f"unknown fault settings: {sorted(unknown)}")
            self.settings = FaultSettings(**{**asdict(self.settings), **changes})
            return self.settings

    def clear(self) -> FaultSettings:
        with self._lock:
            self.settings = FaultSettings()
            return self.settings

    def draw(self, path: str) -> Decision:
        with self._lock:
            s = self.settings
            if path == TOKEN_PATH and not s.include_token:
                return Decision(0.0, None)
            if s.path_prefix and not path.startswith(s.path_prefix):
                return Decision(0.0, None)
            if s.unauthorized_next > 0 and path != TOKEN_PATH:
                s.unauthorized_next -= 1
                return Decision(s.latency, 401)
            if s.rate_limit_next > 0:
                s.rate_limit_next -= 1
                return Decision(s.latency, 429, s.retry_after)
            if s.fail_next > 0:
                s.fail_next -= 1
                return Decision(s.latency, s.fail_status)
            if s.commit_then_fail_next > 0:
                s.commit_then_fail_next -= 1
                return Decision(s.latency, s.fail_status, after_commit=True)
            if s.error_rate > 0 and self._rng.random() < s.error_rate:
                return Decision(s.latency, s.error_status)
            return Decision(s.latency, None)


@dataclass
class Call:
    method: str
    path: str
    endpoint: str  # the route template, e.g. ``PUT /abonents-service/api/v1/accounts/{x}/block``
    status: int
    at: float = field(default_factory=time.time)
    fault: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CallLog:
    """Every operator API call in order, with per-endpoint counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []

    def add(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()

    def counts(self, *, status: int | None = None) -> dict[str, int]:
        """``{"METHOD /route/template": n}``, optionally only calls that answered ``status``."""
        return dict(Counter(c.endpoint for c in self.calls() if status is None or c.status == status))

    def count(self, method: str, endpoint: str, *, status: int | None = None) -> int:
        return self.counts(status=status).get(f"{method} {endpoint}", 0)

    def snapshot(self) -> dict[str, Any]:
        calls = self.calls()
        return {
            "calls": [c.as_dict() for c in calls],
            "counts": dict(Counter(c.endpoint for c in calls)),
            "ok_counts": dict(Counter(c.endpoint for c in calls if c.status < 400)),
        }


__all__ = ["TOKEN_PATH", "Call", "CallLog", "Decision", "FaultSettings", "Faults"]
