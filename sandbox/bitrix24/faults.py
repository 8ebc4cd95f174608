"""Faults a test can inject: latency, error answers, rate-limit storms, commit-then-time-out."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("latency", "error", "storm", "commit_then_timeout", "operating", "redirect")


@dataclass
class Fault:
    """``count`` None means until cleared; ``method`` None means every method."""

    kind: str
    method: str | None = None
    count: int | None = None
    seconds: float = 0.0
    status: int = 500
    code: str = ""
    description: str = "Internal server error"
    location: str = ""  # for "redirect": the new origin, e.g. http://localhost:8082
    until: float | None = None
    id: int = 0
    fired: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Faults:
    items: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0

    def add(self, fault: Fault) -> Fault:
        if fault.kind not in KINDS:
            raise ValueError(f"fault kind {fault.kind!r} must be one of {', '.join(KINDS)}")
        with self._lock:
            self._next += 1
            fault.id = self._next
            if fault.kind == "storm":
                fault.until = time.monotonic() + fault.seconds
            self.items.append(fault)
            return fault

    def take(self, kind: str, method: str) -> Fault | None:
        """The first live fault of ``kind`` matching ``method``; consumes one of its ``count``."""
        with self._lock:
            now = time.monotonic()
            for fault in list(self.items):
                if fault.kind != kind or (fault.method and fault.method != method):
                    continue
                if fault.until is not None and now >= fault.until:
                    self.items.remove(fault)
                    continue
                fault.fired += 1
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.items.remove(fault)
                return fault
            return None

    def clear(self) -> None:
        with self._lock:
            self.items.clear()

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_dict() for f in self.items]
