"""Process entry points for the multi-process Bitrix24 tests (spawned, so importable by name)."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from clients.bitrix24 import Bitrix24Client, Bitrix24Config, Bitrix24Error, RedisTokenStore


def _client(config: dict[str, Any], redis_url: str, store_key: str | None) -> Bitrix24Client:
    client = redis.Redis.from_url(redis_url)
    store = RedisTokenStore(client, store_key) if store_key else None
    return Bitrix24Client(Bitrix24Config(**config), redis=client, token_store=store, rate_limit_retries=0)


def oauth_caller(
    config: dict[str, Any], redis_url: str, store_key: str, ready: Any, go: Any, results: Any, threads: int
) -> None:
    """Warm up, wait for ``go`` (tokens expired meanwhile), then call from several threads at once."""
    client = _client(config, redis_url, store_key)
    client.call("crm.contact.list", {"start": -1})
    ready.set()
    go.wait(30)
    errors: list[str] = []

    def work() -> None:
        for _ in range(3):
            try:
                client.call("crm.contact.list", {"start": -1})
            except Bitrix24Error as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    results.put({"refreshes": client.auth.refreshes, "errors": errors})  # type: ignore[attr-defined]


def hammer(config: dict[str, Any], redis_url: str, ready: Any, go: Any, results: Any, calls: int) -> None:
    """Make ``calls`` requests as fast as the shared limiter allows; report 503s and timing."""
    client = _client(config, redis_url, None)
    ready.set()
    go.wait(30)
    start = time.time()
    limited = 0
    for _ in range(calls):
        try:
            client.call("crm.contact.list", {"start": -1})
        except Bitrix24Error as exc:
            if exc.code == "QUERY_LIMIT_EXCEEDED":
                limited += 1
            else:
                raise
    results.put({"start": start, "end": time.time(), "limited": limited, "requests": client.stats.requests})
