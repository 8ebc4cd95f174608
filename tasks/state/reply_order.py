"""Each dialog's operator replies not yet sent, in the order the operator wrote them.

Replies of one dialog are separate tasks: a 503 or a busy lock on the first lets the second overtake
it, and the subscriber reads the answers out of order. So each reply joins its dialog's queue when it
is published (:func:`join`) and leaves it once sent and reported, or dead-lettered (:func:`leave`).
Before sending, a reply asks for the earlier ones still here (:func:`earlier`) and waits while there
are any, at most ``REPLY_ORDER_WAIT`` seconds counted from its first wait (:func:`waiting_since`);
past that it goes ahead and the earlier ones leave the queue, so one stuck reply costs one bound,
not one per later reply.

The order is Bitrix24's own: ``im.message_id`` grows within a portal's chat. Redis layout, per dialog
(external chat id ``abonent-<id>``): ``rdb24:reply:pending:<dialog>`` (sorted set, member = reply key,
score = im message id) and ``rdb24:reply:waiting:<dialog>`` (hash, reply key -> when it first waited).
Both expire, so a quiet dialog leaves nothing behind. The same shape as the subscriber-message order.
"""

from __future__ import annotations

import time
from typing import cast

import redis

from tasks.state import keys

PENDING_PREFIX = keys.REPLY_PENDING_PREFIX
WAITING_PREFIX = keys.REPLY_WAITING_PREFIX


def pending_key(dialog: str) -> str:
    return f"{PENDING_PREFIX}:{dialog}"


def waiting_key(dialog: str) -> str:
    return f"{WAITING_PREFIX}:{dialog}"


def join(client: redis.Redis, dialog: str, reply_key: str, position: int, *, ttl: int) -> None:
    """The reply waits in its dialog's queue (again, on a resend: same position)."""
    with client.pipeline() as pipe:
        pipe.zadd(pending_key(dialog), {reply_key: position})
        pipe.expire(pending_key(dialog), ttl)
        pipe.execute()


def leave(client: redis.Redis, dialog: str, *reply_keys: str) -> None:
    """Sent (or dead-lettered, or given up on): later replies no longer wait for these."""
    if not reply_keys:
        return
    with client.pipeline() as pipe:
        pipe.zrem(pending_key(dialog), *reply_keys)
        pipe.hdel(waiting_key(dialog), *reply_keys)
        pipe.execute()


def earlier(client: redis.Redis, dialog: str, reply_key: str, position: int) -> list[str]:
    """The dialog's pending replies written before this one, oldest first."""
    rows = cast(
        "list[tuple[bytes | str, float]]",
        client.zrangebyscore(pending_key(dialog), "-inf", f"({position}", withscores=True),
    )
    found = [_text(member) for member, _ in rows]
    return [other for other in found if other != reply_key]


def waiting_since(client: redis.Redis, dialog: str, reply_key: str, *, ttl: int) -> float:
    """When this reply first had to wait (recorded now if this is its first wait)."""
    key = waiting_key(dialog)
    now = time.time()
    with client.pipeline() as pipe:
        pipe.hsetnx(key, reply_key, repr(now))
        pipe.hget(key, reply_key)
        pipe.expire(key, ttl)
        _, since, _ = pipe.execute()
    return float(since) if since is not None else now


def pending(client: redis.Redis, dialog: str) -> list[str]:
    """Every pending reply of the dialog, oldest first (for tests and ``rdb24 status``)."""
    members = cast("list[bytes | str]", client.zrange(pending_key(dialog), 0, -1))
    return [_text(m) for m in members]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["earlier", "join", "leave", "pending", "pending_key", "waiting_key", "waiting_since"]
