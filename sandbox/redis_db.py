"""Claim a Redis database index on a shared local Redis, so a local stack never touches others' keys.

The claim uses the same key as the test fixtures (``rdb24:test-session-claim``), so a test session
never picks (and flushes) the index a running stack uses, and vice versa. A stack's claim has no
expiry while it runs and is released when it stops; a claim left by a crashed stack (its pid is
gone) is taken over.
"""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlparse

import redis

CLAIM_KEY = "rdb24:test-session-claim"
OWNER_PREFIX = "stack-"


class NoFreeDatabaseError(RuntimeError):
    """Every database index of the shared Redis is claimed."""


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def _stale_stack_claim(owner: str | None) -> bool:
    if not owner or not owner.startswith(OWNER_PREFIX):
        return False
    try:
        pid = int(owner[len(OWNER_PREFIX) :])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return True
    except PermissionError:
        return False
    return False


def claim_database(base_url: str, pid: int | None = None) -> str:
    """The URL of a database index (1..15) claimed for this stack."""
    parsed = urlparse(base_url)
    owner = f"{OWNER_PREFIX}{pid or os.getpid()}"
    for db in range(1, 16):
        url = parsed._replace(path=f"/{db}").geturl()
        client = redis.Redis.from_url(url, decode_responses=True)
        if client.set(CLAIM_KEY, owner, nx=True):
            return url
        if _stale_stack_claim(str(client.get(CLAIM_KEY) or "")):
            client.set(CLAIM_KEY, owner)
            return url
    raise NoFreeDatabaseError(f"every database index of {parsed.hostname}:{parsed.port} is claimed")


def release_database(url: str, pid: int | None = None) -> None:
    owner = f"{OWNER_PREFIX}{pid or os.getpid()}"
    with contextlib.suppress(redis.RedisError, OSError):
        client = redis.Redis.from_url(url, decode_responses=True)
        if client.get(CLAIM_KEY) == owner:
            client.delete(CLAIM_KEY)
