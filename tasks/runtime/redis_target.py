"""Where Redis is: one plain URL, or a Sentinel group; the one parser every Redis client of ours uses.

``REDIS_URL`` is either a redis-py URL (``redis://``, ``rediss://``, ``unix://``) or, for a Redis kept
available by Sentinel, the form kombu's broker and Celery's result backend both accept:
``sentinel://[:password@]host:26379[/db];sentinel://host2:26379;...`` (one entry per sentinel; the
password and database of the *first* entry are the master's). The master's name comes from
``REDIS_SENTINEL_MASTER``: kombu and Celery take it as the transport option ``master_name``
(``broker_transport_options`` / ``result_backend_transport_options``), our own clients from
``redis.sentinel.Sentinel(...).master_for(name)``, RedBeat from ``redbeat_redis_options``
(``sentinels`` + ``service_name``, with a ``redis-sentinel://`` URL). A client made here asks the
sentinels for the current master on every new connection, so it follows a failover by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

from tasks.errors import RedisUrlError
from tasks.settings import Settings

PLAIN_SCHEMES = ("redis://", "rediss://", "unix://")
SENTINEL_SCHEME = "sentinel://"
SENTINEL_DEFAULT_PORT = 26379


@dataclass(frozen=True)
class RedisTarget:
    url: str  # as configured (Celery and kombu are given this string unchanged)
    sentinels: tuple[tuple[str, int], ...] = ()  # empty: a plain URL
    master: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py client (``options`` as for ``redis.Redis``: decode_responses, socket_timeout...)."""
        if not self.is_sentinel:
            return redis.Redis.from_url(self.url, **options)
        timeouts: dict[str, Any] = {
            k: options[k] for k in ("socket_timeout", "socket_connect_timeout") if k in options
        }
        sentinel = Sentinel(list(self.sentinels), sentinel_kwargs=timeouts or None)
        assert self.master is not None
        return sentinel.master_for(
            self.master, db=self.db, username=self.username, password=self.password, **options
        )

    def transport_options(self) -> dict[str, Any]:
        """What kombu's broker and Celery's backend need beside the URL (``master_name``)."""
        return {"master_name": self.master} if self.is_sentinel else {}

    def redbeat_config(self) -> dict[str, Any]:
        """RedBeat's URL and options: it wants ``redis-sentinel://`` plus the sentinel list."""
        if not self.is_sentinel:
            return {"redbeat_redis_url": self.url}
        options: dict[str, Any] = {
            "sentinels": list(self.sentinels),
            "service_name": self.master,
            "db": self.db,
        }
        if self.password is not None:
            options["password"] = self.password
        if self.username is not None:
            options["username"] = self.username
        return {"redbeat_redis_url": "redis-sentinel://", "redbeat_redis_options": options}


def parse(url: str, master: str = "") -> RedisTarget:
    """Read ``REDIS_URL`` (and the Sentinel master name, needed only for ``sentinel://``)."""
    url = url.strip()
    if url.startswith(PLAIN_SCHEMES):
        return RedisTarget(url=url)
    if not url.startswith(SENTINEL_SCHEME):
        raise RedisUrlError(
            f"REDIS_URL must start with redis://, rediss://, unix:// or sentinel://, got {url[:20]!r}"
        )
    if not master:
        raise RedisUrlError("REDIS_URL is sentinel://...: set REDIS_SENTINEL_MASTER to the master's name")
    sentinels: list[tuple[str, int]] = []
    first = None
    for chunk in url.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if not chunk.startswith(SENTINEL_SCHEME):
            raise RedisUrlError(
                f"REDIS_URL: every ';'-separated entry must be sentinel://host:port, got {chunk!r}"
            )
        parts = urlsplit(chunk)
        try:
            port = parts.port or SENTINEL_DEFAULT_PORT
        except ValueError as exc:
            raise RedisUrlError(f"REDIS_URL: bad port in {chunk!r}") from exc
        if not parts.hostname:
            raise RedisUrlError(f"REDIS_URL: no host in {chunk!r}")
        sentinels.append((parts.hostname, port))
        first = first or parts
    assert first is not None
    db_text = first.path.strip("/") or "0"
    if not db_text.isdigit():
        raise RedisUrlError(f"REDIS_URL: database must be a number, got {db_text!r}")
    return RedisTarget(
        url=url,
        sentinels=tuple(sentinels),
        master=master,
        db=int(db_text),
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password is not None else None,
    )


def from_settings(settings: Settings) -> RedisTarget:
    return parse(settings.redis_url, settings.redis_sentinel_master)


__all__ = ["RedisTarget", "RedisUrlError", "from_settings", "parse"]
