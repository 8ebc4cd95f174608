"""Per-process clients built from ``Settings``: the only place the task layer constructs them.

Cached per process (keyed by pid, so a prefork child never reuses sockets opened by its parent) and
thread-safe (``-P threads``). ``reset()`` drops them: the base task calls it when a service rejects
our credentials, so the next call builds a client that authenticates afresh.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from loguru import logger

from tasks.runtime import redis_target
from tasks.settings import Settings, get_settings
from tasks.state import keys

if TYPE_CHECKING:
    from clients.bitrix24 import Bitrix24Client, Bitrix24Config
    from clients.rosdomofon import RosDomofonAPI

T = TypeVar("T")

_lock = threading.RLock()
_cache: dict[str, Any] = {}
_pid = os.getpid()


def _cached(name: str, build: Callable[[], T]) -> T:
    global _pid
    with _lock:
        if _pid != os.getpid():  # forked: the parent's clients are not ours to use
            _cache.clear()
            _pid = os.getpid()
        if name not in _cache:
            _cache[name] = build()
        return _cache[name]


def redis_client() -> redis.Redis:
    """Redis (decoded strings) for locks, indexes, markers, dead letters and the rate limiter.

    With read and connect timeouts and TCP keepalive: a half-open connection fails the command
    (the task retries) instead of blocking the task, or a lock's keep-alive thread, forever.
    """
    return _cached("redis", lambda: state_redis(get_settings()))


def state_redis(settings: Settings, *, decode_responses: bool = True) -> redis.Redis:
    """A redis-py client on ``REDIS_URL`` (plain or ``sentinel://``) with the timeouts every client of
    ours uses."""
    return redis_target.from_settings(settings).client(
        decode_responses=decode_responses, **settings.redis_client_options()
    )


def rosdomofon_api() -> RosDomofonAPI:
    return _cached("rosdomofon", lambda: build_rosdomofon_api(get_settings()))


def bitrix24_client() -> Bitrix24Client:
    return _cached("bitrix24", lambda: build_bitrix24_client(get_settings()))


def build_rosdomofon_api(settings: Settings) -> RosDomofonAPI:
    from clients.rosdomofon import RosDomofonAPI

    return RosDomofonAPI(
        settings.rosdomofon_username,
        settings.rosdomofon_password.get_secret_value(),
        base_url=str(settings.rosdomofon_base_url),
        timeout=(min(5.0, settings.rosdomofon_timeout), settings.rosdomofon_timeout),
        company_short_name=settings.company_short_name or None,
    )


def bitrix24_config(settings: Settings) -> Bitrix24Config:
    from clients.bitrix24 import Bitrix24Config

    def secret(value: Any) -> Any:
        return value if value.get_secret_value() else None

    return Bitrix24Config(
        key_prefix=keys.BITRIX24_NAMESPACE,
        webhook_url=secret(settings.bitrix24_webhook_url),
        client_endpoint=settings.bitrix24_client_endpoint or None,
        client_id=settings.bitrix24_client_id or None,
        client_secret=secret(settings.bitrix24_client_secret),
        server_endpoint=settings.bitrix24_server_endpoint or None,
        access_token=secret(settings.bitrix24_access_token),
        refresh_token=secret(settings.bitrix24_refresh_token),
        application_token=secret(settings.bitrix24_application_token),
        rate=settings.bitrix24_rate,
        burst=settings.bitrix24_burst,
        timeout=settings.bitrix24_timeout,
    )


def build_bitrix24_client(settings: Settings) -> Bitrix24Client:
    """Shares the rate-limit bucket, token store and refresh lock with every process through Redis."""
    from clients.bitrix24 import Bitrix24Client

    # rate_limit_retries=0: a refused call becomes a task retry with a countdown instead of a sleep
    # that holds a worker slot; the task layer owns retries (tasks.runtime.retry_policy).
    return Bitrix24Client(
        bitrix24_config(settings),
        redis=state_redis(settings, decode_responses=False),
        rate_limit_retries=0,
    )


def reset() -> None:
    """Close and forget every cached client (after credentials were rejected)."""
    with _lock:
        for name, value in list(_cache.items()):
            if name == "redis":
                continue
            close = getattr(value, "close", None)
            try:
                if close is not None:
                    close()
            except Exception as exc:  # closing a broken client must not hide the original error
                logger.debug("closing {} client failed: {}", name, exc)
            _cache.pop(name, None)


def reset_all() -> None:
    """Forget every cached client including Redis (tests that re-point ``REDIS_URL``)."""
    reset()
    with _lock:
        _cache.clear()
