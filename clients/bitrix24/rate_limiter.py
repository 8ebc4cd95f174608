"""A leaky bucket shared by every process through Redis, plus Bitrix24's per-method time budget.

The portal counts +1 per HTTP request into a bucket draining ``rate`` per second and answers 503 once
it holds more than ``burst``. Every worker reserves its slot with one atomic Lua script against the
same Redis key, so a fleet never exceeds what the portal allows. The script *reserves* a slot (the
level may run ahead of ``burst`` by the queued requests) and returns how long to wait for it, which
keeps callers FIFO and costs one round trip per request. Redis's own clock is used so processes on
different hosts agree on time.

Live traffic first: inside :func:`background` (reconciliation) a request takes a slot only while the
bucket is below a share of the burst, and waits without reserving otherwise, so message and reply
requests, which reserve at once, never queue behind background work.

The operating-time tracker keeps, per method, the ``time.operating`` the portal reports and the moment
a method is parked after ``OPERATION_TIME_LIMIT``, so no process calls a parked method before reset.

Both take their Redis key from the caller (``clients.bitrix24.redis_keys``), so the namespace is the
deployment's choice, not this module's.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import redis

_RESERVE = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'level', 'ts')
local level = tonumber(state[1]) or 0
local ts = tonumber(state[2]) or now
level = math.max(0, level - (now - ts) * rate) + cost
local wait = 0
if level > capacity then
  wait = (level - capacity) / rate
end
redis.call('HSET', key, 'level', tostring(level), 'ts', tostring(now))
redis.call('PEXPIRE', key, math.ceil((level / rate + 60) * 1000))
return tostring(wait)
"""


# Reserve only while the level stays within ``ceiling``; else return the wait and reserve nothing.
_RESERVE_BELOW = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local ceiling = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'level', 'ts')
local level = tonumber(state[1]) or 0
local ts = tonumber(state[2]) or now
level = math.max(0, level - (now - ts) * rate)
if level + cost > ceiling then
  return tostring((level + cost - ceiling) / rate)
end
level = level + cost
redis.call('HSET', key, 'level', tostring(level), 'ts', tostring(now))
redis.call('PEXPIRE', key, math.ceil((level / rate + 60) * 1000))
return '0'
"""

# Seconds until a request would pass without waiting; reserves nothing.
_DELAY = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'level', 'ts')
local level = tonumber(state[1]) or 0
local ts = tonumber(state[2]) or now
level = math.max(0, level - (now - ts) * rate)
local wait = 0
if level + 1 > capacity then
  wait = (level + 1 - capacity) / rate
end
return {tostring(wait), tostring(level)}
"""

# The share of the bucket the calling thread's background work may fill (None: live traffic).
_SHARE: contextvars.ContextVar[float | None] = contextvars.ContextVar("bitrix24_bucket_share", default=None)


@contextmanager
def background(share: float) -> Iterator[None]:
    """Mark the requests made inside the block as background work (reconciliation).

    Live requests reserve their slot at once, queueing behind whatever is reserved (FIFO). A
    background request reserves only while the shared level stays within ``share`` of the burst, and
    otherwise waits without reserving: it never takes a slot a live message is waiting for, and the
    rest of the burst stays free for live traffic however long reconciliation runs.
    """
    token = _SHARE.set(min(1.0, max(0.01, share)))
    try:
        yield
    finally:
        _SHARE.reset(token)


def background_share() -> float | None:
    return _SHARE.get()


class Limiter(Protocol):
    def acquire(self, cost: int = 1) -> float: ...


class RedisLeakyBucket:
    """The portal's bucket mirrored in Redis under ``key``. ``acquire()`` blocks until the slot is due."""

    def __init__(
        self, client: redis.Redis, key: str, *, rate: float = 2.0, burst: int = 50, margin: int = 1
    ) -> None:
        self._redis = client
        self.key = key
        self.rate = rate
        self.capacity = max(1, burst - margin)
        self._script = client.register_script(_RESERVE)
        self._below = client.register_script(_RESERVE_BELOW)
        self._delay = client.register_script(_DELAY)

    def reserve(self, cost: int = 1) -> float:
        """Reserve a slot now; return the seconds until it may be used (no sleeping)."""
        return float(self._script(keys=[self.key], args=[self.rate, self.capacity, cost]))

    def delay(self) -> float:
        """Seconds until one more request would pass without waiting (nothing is reserved).

        A batching caller sleeps this long *before* it gathers its batch: the time the request
        would have waited for its slot is spent collecting more work for it instead.
        """
        return self.pressure()[0]

    def pressure(self) -> tuple[float, float]:
        """(seconds until a request would pass at once, share of the burst in use now)."""
        wait, level = self._delay(keys=[self.key], args=[self.rate, self.capacity])
        return float(wait), float(level) / self.capacity

    def reserve_below(self, ceiling: float, cost: int = 1) -> float:
        """Reserve a slot only if the level stays within ``ceiling``; else the seconds until it would."""
        return float(self._below(keys=[self.key], args=[self.rate, ceiling, cost]))

    def acquire(self, cost: int = 1) -> float:
        share = _SHARE.get()
        if share is not None:
            return _acquire_below(self.reserve_below, self.capacity * share, cost)
        wait = self.reserve(cost)
        if wait > 0:
            time.sleep(wait)
        return wait


def _acquire_below(reserve_below: Callable[[float, int], float], ceiling: float, cost: int) -> float:
    """Wait (without holding a reservation) until the level leaves room below ``ceiling``."""
    waited = 0.0
    ceiling = max(float(cost), ceiling)
    while True:
        wait = reserve_below(ceiling, cost)
        if wait <= 0:
            return waited
        pause = min(max(wait, 0.02), 1.0)  # re-check often: live traffic may come and go
        time.sleep(pause)
        waited += pause


class LocalLeakyBucket:
    """The same bucket for a single process (no Redis): threads share it."""

    def __init__(self, *, rate: float = 2.0, burst: int = 50, margin: int = 1) -> None:
        self.rate = rate
        self.capacity = max(1, burst - margin)
        self._level = 0.0
        self._ts = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, cost: int = 1) -> float:
        with self._lock:
            now = time.monotonic()
            self._level = max(0.0, self._level - (now - self._ts) * self.rate) + cost
            self._ts = now
            return max(0.0, (self._level - self.capacity) / self.rate)

    def delay(self) -> float:
        return self.pressure()[0]

    def pressure(self) -> tuple[float, float]:
        with self._lock:
            level = max(0.0, self._level - (time.monotonic() - self._ts) * self.rate)
            return max(0.0, (level + 1 - self.capacity) / self.rate), level / self.capacity

    def reserve_below(self, ceiling: float, cost: int = 1) -> float:
        with self._lock:
            now = time.monotonic()
            level = max(0.0, self._level - (now - self._ts) * self.rate)
            if level + cost > ceiling:
                return (level + cost - ceiling) / self.rate
            self._level, self._ts = level + cost, now
            return 0.0

    def acquire(self, cost: int = 1) -> float:
        share = _SHARE.get()
        if share is not None:
            return _acquire_below(self.reserve_below, self.capacity * share, cost)
        wait = self.reserve(cost)
        if wait > 0:
            time.sleep(wait)
        return wait


class OperatingTime:
    """Per-method operating time and parking, shared through Redis when given (else in memory).

    In Redis, under ``prefix``: ``<prefix>:used`` (hash method -> ``seconds:reset``) and
    ``<prefix>:parked:<method>`` (string, expiring at the reset).
    """

    def __init__(self, client: redis.Redis | None, prefix: str, *, limit: float = 480.0) -> None:
        self._redis = client
        self._prefix = prefix
        self.limit = limit
        self._local: dict[str, tuple[float, float]] = {}
        self._parked: dict[str, float] = {}

    def record(self, method: str, operating: float | None, reset_at: float | None) -> None:
        """Remember the portal's latest ``operating`` seconds for ``method``."""
        if operating is None:
            return
        if self._redis is not None:
            key = f"{self._prefix}:used"
            self._redis.hset(key, method, f"{operating}:{reset_at or 0}")
            self._redis.expire(key, 660)  # the portal's window is 10 minutes
        else:
            self._local[method] = (operating, reset_at or 0.0)

    def _entry(self, method: str) -> tuple[float, float]:
        if self._redis is not None:
            raw = self._redis.hget(f"{self._prefix}:used", method)
            if not raw:
                return 0.0, 0.0
            used, reset = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(":")
            return float(used), float(reset)
        return self._local.get(method, (0.0, 0.0))

    def used(self, method: str) -> float:
        """The latest ``operating`` seconds the portal reported for ``method``."""
        return self._entry(method)[0]

    def reset_at(self, method: str) -> float | None:
        """When the portal said the oldest basket of ``method`` drops out (unix time), if known."""
        reset = self._entry(method)[1]
        return reset if reset > time.time() else None

    def park(self, method: str, until: float) -> None:
        """Stop every process calling ``method`` until the unix time ``until``."""
        if self._redis is not None:
            ttl_ms = max(1, int((until - time.time()) * 1000))
            self._redis.set(f"{self._prefix}:parked:{method}", str(until), px=ttl_ms)
        else:
            self._parked[method] = until

    def parked_for(self, method: str) -> float:
        """Seconds ``method`` stays parked (0 when callable)."""
        if self._redis is not None:
            raw = self._redis.get(f"{self._prefix}:parked:{method}")
            until = float(raw.decode() if isinstance(raw, bytes) else raw) if raw else 0.0
        else:
            until = self._parked.get(method, 0.0)
        return max(0.0, until - time.time())


__all__ = [
    "Limiter",
    "LocalLeakyBucket",
    "OperatingTime",
    "RedisLeakyBucket",
    "background",
    "background_share",
]
