"""kombu's Redis transport, minus one way to lose a message when Redis goes away.

kombu fetches a message with ``BRPOP`` (it leaves its queue) and only then records it in the
``unacked`` hash that the restore sweep redelivers from. If Redis stops in between, that write
fails, the delivery is abandoned, and the message exists nowhere but in this worker's memory: lost
(the fault scenario "Redis restarts while messages flow" shows it). Here such a message is kept
("stranded") and pushed back to its queue as soon as Redis answers again: at the next restore sweep
(every ``REDIS_RESTORE_INTERVAL`` seconds, also right after reconnecting) or at the channel's
shutdown restore. Only a worker killed while Redis is still down loses it, and that is logged.
Also, closing a channel after a connection loss no longer kills the worker process (see
:meth:`Channel._connparams`).

Installed for the ``redis``/``rediss`` schemes, and ``sentinel`` (:class:`SentinelTransport`), by
:func:`install` (called when ``tasks.runtime.app`` is imported), so every process of ours gets it while
URLs, ``as_uri()`` and Flower stay unchanged.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from kombu import transport as kombu_transport
from kombu.transport import redis as kombu_redis
from loguru import logger

# Process-wide: a reconnect replaces the channel and its QoS, the stranded messages must outlive it.
_stranded: list[tuple[dict[str, Any], str, str]] = []
_stranded_lock = threading.Lock()


class QoS(kombu_redis.QoS):
    channel: Channel  # always the Channel below (the stubs type it as kombu's virtual channel)

    def append(self, message: Any, delivery_tag: str) -> None:
        try:
            super().append(message, delivery_tag)
        except self.channel.connection_errors as exc:
            delivery = message.delivery_info
            with _stranded_lock:
                _stranded.append((message._raw, delivery["exchange"], delivery["routing_key"]))
            task_id = (message._raw.get("headers") or {}).get("id")
            logger.error(
                "fetched task {} but Redis went away before it was recorded as unacked ({}); "
                "holding it to requeue when Redis is back",
                task_id, exc,
            )  # fmt: skip
            raise

    def restore_stranded(self) -> int:
        """Push messages stranded by a failed fetch back to their queues; how many were pushed."""
        with _stranded_lock:
            pending = list(_stranded)
        if not pending:
            return 0
        try:
            with self.channel.conn_or_acquire() as client, client.pipeline() as pipe:
                for payload, exchange, routing_key in pending:
                    # kombu's own restore step; private, so the kombu stubs leave it out.
                    self.channel._do_restore_message(payload, exchange, routing_key, pipe)  # type: ignore[attr-defined]
                pipe.execute()
        except self.channel.connection_errors as exc:
            logger.warning(
                "{} stranded message(s) not requeued yet, Redis unreachable: {}", len(pending), exc
            )
            return 0
        with _stranded_lock:
            del _stranded[: len(pending)]  # only ever appended to, so these are the ones pushed
        logger.warning("requeued {} message(s) stranded by a Redis outage during fetch", len(pending))
        return len(pending)

    def restore_visible(self, *args: Any, **kwargs: Any) -> Any:
        self.restore_stranded()
        return super().restore_visible(*args, **kwargs)

    def restore_unacked(self, client: Any = None) -> Any:
        self.restore_stranded()
        return super().restore_unacked(client)


class _ClosedConnectionGuard:
    """Shared by the plain and the Sentinel channel (see :meth:`_connparams`)."""

    connection: Any
    connection_errors: tuple[type[BaseException], ...]  # set by kombu from the transport's

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        # After a connection loss Celery's consumer detaches the transport (collect), then closes the
        # channel, whose restore of unacked messages needs a new Redis client: kombu then fails with
        # AttributeError, which nothing catches, and the worker process dies ("Unrecoverable
        # error"). As a connection error it is ignored like the rest of that cleanup; the messages
        # stay in ``unacked`` for the restore sweep.
        if self.connection.client is None:
            raise redis.ConnectionError(
                "broker connection already closed; unacked messages left for the sweep"
            )
        return super()._connparams(asynchronous)  # type: ignore[misc]  # private, absent from the kombu stubs


class Channel(_ClosedConnectionGuard, kombu_redis.Channel):
    QoS = QoS


class SentinelChannel(_ClosedConnectionGuard, kombu_redis.SentinelChannel):
    """``sentinel://`` URLs: the master found through Sentinel, with the same stranded-message rescue."""

    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def stranded_count() -> int:
    """Messages this process holds because Redis went away mid-fetch (for logs and tests)."""
    with _stranded_lock:
        return len(_stranded)


def install() -> None:
    """Make the ``redis``/``rediss`` (``sentinel``) schemes resolve to our transports in this process."""
    for scheme, transport in (
        ("redis", "Transport"),
        ("rediss", "Transport"),
        ("sentinel", "SentinelTransport"),
    ):
        kombu_transport.TRANSPORT_ALIASES[scheme] = f"{__name__}:{transport}"
        # Resolved before install: resolve again (a private cache, absent from the kombu stubs).
        kombu_transport._transport_cache.pop(scheme, None)  # type: ignore[attr-defined]


__all__ = ["Channel", "QoS", "SentinelChannel", "SentinelTransport", "Transport", "install", "stranded_count"]
