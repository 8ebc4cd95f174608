"""Claim a Redis database index on a shared local Redis, so a local stack never touches others' keys.

The claim uses the same key and value shape as the test fixtures (``rdb24:test-session-claim`` =
``<pid>-<tag>``), so a test session never picks (and flushes) the index a running stack uses, and vice
versa. A stack's claim has no expiry while it runs and is released when it stops; a claim whose
process is gone (a crashed stack or test session) is taken over and its leftovers flushed.
"""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlparse

import redis

CLAIM_KEY = "rdb24:test-session-claim"
OWNER_TAG = "stack"


class NoFreeDatabaseError(RuntimeError):
    """Every database index of the shared Redis is claimed."""


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def _owner(pid: int | None) -> str:
    return f"{pid or os.getpid()}-{OWNER_TAG}"


def _stale(owner: str | bytes | None) -> bool:
    """The claiming process (``<pid>-...``) is gone; an unreadable claim is left alone."""
    text = owner.decode(errors="replace") if isinstance(owner, bytes) else owner or ""
    try:
        pid = int(text.split("-", 1)[0])
        os.kill(pid, 0)
    except ValueError:
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim_database(base_url: str, pid: int | None = None) -> str:
    """The URL of a database index (1..15) claimed for this stack."""
    parsed = urlparse(base_url)
    owner = _owner(pid)
    urls = [parsed._replace(path=f"/{db}").geturl() for db in range(1, 16)]
    for url in urls:
        if redis.Redis.from_url(url).set(CLAIM_KEY, owner, nx=True):
            return url
    for url in urls:
        with redis.Redis.from_url(url, decode_responses=True).pipeline() as pipe:
            try:
                pipe.watch(CLAIM_KEY)
                if not _stale(pipe.get(CLAIM_KEY)):
                    continue
                pipe.multi()
                pipe.flushdb()
                pipe.set(CLAIM_KEY, owner)
                pipe.execute()
                return url
            except redis.WatchError:
                continue
    raise NoFreeDatabaseError(f"every database index of {parsed.hostname}:{parsed.port} is claimed")


def release_database(url: str, pid: int | None = None) -> None:
    owner = _owner(pid)
    with contextlib.suppress(redis.RedisError, OSError):
        client = redis.Redis.from_url(url, decode_responses=True)
        if client.get(CLAIM_KEY) == owner:
            client.delete(CLAIM_KEY)
