"""The portal's two limits: the leaky bucket per source IP and the per-method operating time."""

from __future__ import annotations

import threading
import time
from collections import defaultdict


class LeakyBucket:
    """+1 per HTTP request, drains ``rate``/s; a request that would push it past ``burst`` is refused."""

    def __init__(self, rate: float, burst: int, enabled: bool = True) -> None:
        self.rate = rate
        self.burst = burst
        self.enabled = enabled
        self._levels: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def admit(self, source: str) -> bool:
        if not self.enabled:
            return True
        with self._lock:
            now = time.monotonic()
            level, ts = self._levels.get(source, (0.0, now))
            level = max(0.0, level - (now - ts) * self.rate)
            if level + 1 > self.burst + 1e-9:
                self._levels[source] = (level, now)
                return False
            self._levels[source] = (level + 1, now)
            return True

    def level(self, source: str) -> float:
        with self._lock:
            now = time.monotonic()
            level, ts = self._levels.get(source, (0.0, now))
            return max(0.0, level - (now - ts) * self.rate)

    def reset(self) -> None:
        with self._lock:
            self._levels.clear()


class OperatingTime:
    """Seconds spent per (identity, method) in ten 1-minute baskets (sliding 10 minutes)."""

    BASKET = 60.0
    BASKETS = 10

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._baskets: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        self._lock = threading.Lock()

    def _live(self, key: tuple[str, str], now: float) -> dict[int, float]:
        current = int(now // self.BASKET)
        baskets = {b: s for b, s in self._baskets[key].items() if b > current - self.BASKETS}
        self._baskets[key] = baskets
        return baskets

    def add(self, identity: str, method: str, seconds: float) -> None:
        with self._lock:
            now = time.time()
            baskets = self._live((identity, method), now)
            basket = int(now // self.BASKET)
            baskets[basket] = baskets.get(basket, 0.0) + seconds

    def used(self, identity: str, method: str) -> tuple[float, float | None]:
        """(seconds used, unix time the oldest basket drops out or None)."""
        with self._lock:
            baskets = self._live((identity, method), time.time())
            if not baskets:
                return 0.0, None
            oldest = min(baskets)
            return sum(baskets.values()), (oldest + self.BASKETS) * self.BASKET

    def exceeded(self, identity: str, method: str) -> bool:
        return self.used(identity, method)[0] > self.limit

    def reset(self) -> None:
        with self._lock:
            self._baskets.clear()
