"""The request path every operation shares: auth, shared rate limit, transport, error mapping.

Operation methods (contacts, Open Lines, chat, batch, paging) are thin and live in their own modules
as mixins; they all end in :meth:`Bitrix24Client.call_raw`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import redis
from loguru import logger

from clients.bitrix24.auth import Auth, OAuthAuth, WebhookAuth
from clients.bitrix24.batch import BatchMixin
from clients.bitrix24.chat import ChatMixin
from clients.bitrix24.config import Bitrix24Config
from clients.bitrix24.contacts import ContactsMixin
from clients.bitrix24.errors import (
    Bitrix24AmbiguousWriteError,
    Bitrix24AuthError,
    Bitrix24Error,
    Bitrix24OperationTimeError,
    Bitrix24RateLimitedError,
    Bitrix24ServerError,
    from_response,
)
from clients.bitrix24.methods import is_read
from clients.bitrix24.openlines import OpenLinesMixin
from clients.bitrix24.paging import PagingMixin
from clients.bitrix24.rate_limiter import Limiter, LocalLeakyBucket, OperatingTime, RedisLeakyBucket
from clients.bitrix24.token_store import RedisTokenStore, TokenStore
from clients.bitrix24.transport import Transport
from schemas.bitrix24 import B24Envelope

_REFRESHABLE = {"expired_token", "invalid_token"}
_MOVED = {301, 302, 307, 308}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class CallStats:
    """Counters for benchmarks and diagnostics (per client instance)."""

    requests: int = 0
    rate_limited: int = 0
    waited: float = 0.0


class Bitrix24Client(BatchMixin, PagingMixin, ContactsMixin, OpenLinesMixin, ChatMixin):
    """A Bitrix24 portal. Thread-safe; share one per process.

    ``redis`` makes the rate limit, operating-time parking, token store and refresh lock shared by
    every process (keys under ``config.key_prefix``); without it they are per process.
    ``rate_limit_retries`` re-sends a call the portal refused with QUERY_LIMIT_EXCEEDED (it never
    ran); nothing else is retried here.
    """

    def __init__(
        self,
        config: Bitrix24Config,
        *,
        redis: redis.Redis | None = None,
        token_store: TokenStore | None = None,
        limiter: Limiter | None = None,
        rate_limit_retries: int = 2,
    ) -> None:
        self.config = config
        self._redis = redis
        self.transport = Transport(
            timeout=config.timeout, connect_timeout=config.connect_timeout, user_agent=config.user_agent
        )
        key, keys = config.bucket_key, config.redis_keys
        if limiter is None:
            limiter = (
                RedisLeakyBucket(
                    redis, keys.bucket(key), rate=config.rate, burst=config.burst, margin=config.burst_margin
                )
                if redis is not None
                else LocalLeakyBucket(rate=config.rate, burst=config.burst, margin=config.burst_margin)
            )
        self.limiter = limiter
        self.operating = OperatingTime(redis, keys.operating(key), limit=config.operation_time_limit)
        self.auth: Auth
        if config.is_oauth:
            if token_store is None and redis is not None:
                token_store = RedisTokenStore(redis, keys.oauth_token(key, config.client_id or ""))
            self.auth = OAuthAuth(config, self.transport, store=token_store, redis_client=redis)
        else:
            self.auth = WebhookAuth(config.webhook_url.get_secret_value())  # type: ignore[union-attr]
        self.rate_limit_retries = rate_limit_retries
        self.stats = CallStats()
        self._moved_to: str | None = None  # scheme://host of the portal after a 301/302 move

    def _retarget(self, url: str) -> str:
        if self._moved_to is None:
            return url
        parts = urlsplit(url)
        return self._moved_to + parts.path + (f"?{parts.query}" if parts.query else "")

    def rate_pressure(self) -> tuple[float, float]:
        """(seconds until a request would get its slot at once, share of the burst in use now);
        ``(0, 0)`` with a limiter that cannot tell. Batching callers wait longer the fuller it is."""
        pressure = getattr(self.limiter, "pressure", None)
        if not callable(pressure):
            return 0.0, 0.0
        wait, used = pressure()
        return float(wait), float(used)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call ``method`` and return its ``result``."""
        return self.call_raw(method, params).result

    def call_raw(
        self, method: str, params: dict[str, Any] | None = None, *, write: bool | None = None
    ) -> B24Envelope:
        """Call ``method`` and return the whole envelope (``result``, ``total``, ``next``, ``time``)."""
        params = dict(params or {})
        write = (not is_read(method)) if write is None else write
        parked = self.operating.parked_for(method)
        if parked > 0:
            raise Bitrix24OperationTimeError(
                f"{method}: parked after OPERATION_TIME_LIMIT",
                code="OPERATION_TIME_LIMIT",
                retry_after=parked,
                method=method,
            )
        refreshed = False
        limited = 0
        moves = 0
        while True:
            url, body, credential = self.auth.prepare(method, params)
            url = self._retarget(url)
            self.stats.waited += self.limiter.acquire()
            self.stats.requests += 1
            reply = self.transport.post(url, body, method, write=write, secrets=self.auth.secrets())
            if reply.status in _MOVED and reply.headers.get("location") and moves < 2:
                moves += 1  # the portal moved: nothing ran, so re-sending is safe even for writes
                self._moved_to = _origin(urljoin(url, reply.headers["location"]))
                logger.info("bitrix24 portal moved to {}", self._moved_to)
                continue
            error = self._error(method, reply.status, reply.body, write)
            if error is None:
                envelope = B24Envelope.model_validate(reply.body)
                if envelope.time is not None:
                    self._track_operating(method, envelope.time.operating, envelope.time.operating_reset_at)
                logger.debug("bitrix24 {} -> {}", method, reply.status)
                return envelope
            if isinstance(error, Bitrix24RateLimitedError):
                self.stats.rate_limited += 1
                if limited < self.rate_limit_retries:
                    limited += 1
                    time.sleep(min(8.0, 1.0 * 2 ** (limited - 1)))
                    continue
            if (
                isinstance(error, Bitrix24AuthError)
                and self.auth.oauth
                and not refreshed
                and (error.code or "").lower() in _REFRESHABLE
            ):
                refreshed = True
                self.auth.refresh(credential)
                continue
            if isinstance(error, Bitrix24OperationTimeError):
                reset = error.operating_reset_at or self.operating.reset_at(method) or time.time() + 60.0
                error.retry_after = max(0.0, reset - time.time())
                self.operating.park(method, reset)
            logger.warning("bitrix24 {} failed: {}", method, error)
            raise error

    def _track_operating(self, method: str, operating: float | None, reset_at: float | None) -> None:
        """Record the method's time budget; park it before the portal starts answering 429."""
        self.operating.record(method, operating, reset_at)
        if operating is not None and reset_at and operating >= self.config.operation_time_limit:
            logger.warning("bitrix24 {} spent its operating time; parked until the reset", method)
            self.operating.park(method, reset_at)

    @staticmethod
    def _error(method: str, status: int, body: Any, write: bool) -> Bitrix24Error | None:
        if isinstance(body, dict) and status < 400 and not body.get("error") and "result" in body:
            return None
        if not isinstance(body, dict) and status < 400:
            text = f"{method}: answer is not JSON (status {status})"
            cls = Bitrix24AmbiguousWriteError if write else Bitrix24ServerError
            return cls(text, status=status, body=body, method=method)
        return from_response(method, status, body, write=write)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Bitrix24Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Bitrix24Client", "CallStats", "is_read"]
