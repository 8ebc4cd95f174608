"""The outbox: subscriber messages waiting to be posted in a batch, in arrival order per subscriber.

Bitrix24 allows 2 requests per second; ``imconnector.send.messages`` takes many messages per call
(bitrix24-api.md §11). So ``flows.post_to_chat`` puts its message here and returns; the flusher
(:mod:`tasks.flows.post_batch`) takes **the oldest waiting message of each subscriber** (never two of
one subscriber: the portal would get them in one call and a failed first one would be overtaken by
the second), posts them in one request, and removes each one only once its own result is stored.

Layout (all in :mod:`tasks.state.keys`):

* ``OUTBOX_ITEMS`` hash: message id -> :class:`OutboxItem` JSON;
* ``OUTBOX_SUBSCRIBER_PREFIX:<abonent id>`` zset: that subscriber's waiting message ids by arrival;
* ``OUTBOX_READY`` zset: subscribers with waiting messages, scored by their oldest one's arrival,
  so a batch serves the subscribers who waited longest first.

Adding and removing are Lua scripts: a message added while the flusher removes the subscriber's last
one must never be left out of ``OUTBOX_READY`` (it would wait forever).
"""

from __future__ import annotations

from typing import Any

import redis
from pydantic import BaseModel

from tasks.state import keys

ITEMS_KEY = keys.OUTBOX_ITEMS
READY_KEY = keys.OUTBOX_READY
SEQ_KEY = keys.OUTBOX_SEQ
SUBSCRIBER_PREFIX = keys.OUTBOX_SUBSCRIBER_PREFIX

# KEYS: items, ready, seq, subscriber zset. ARGV: message id, abonent id, item JSON.
# Returns 1 when added, 0 when the message was already waiting (a redelivered post step).
_ADD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[4], seq, ARGV[1])
local head = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[2], head[2], ARGV[2])
return 1
"""

# KEYS: items, ready, subscriber zset. ARGV: message id, abonent id.
_REMOVE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
local head = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if head[1] then
  redis.call('ZADD', KEYS[2], head[2], ARGV[2])
else
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
"""


class OutboxItem(BaseModel):
    """One waiting message: the post step's payload (JSON) and how often posting it failed."""

    message_id: str
    abonent_id: int
    payload: dict[str, Any]
    failures: int = 0
    not_before: float = 0.0  # unix time before which a refused element is not tried again


def subscriber_key(abonent_id: int) -> str:
    return f"{SUBSCRIBER_PREFIX}:{int(abonent_id)}"


def add(client: redis.Redis, item: OutboxItem) -> bool:
    """Queue ``item`` behind the subscriber's earlier messages; False if it was already waiting."""
    script = client.register_script(_ADD)
    added = script(
        keys=[ITEMS_KEY, READY_KEY, SEQ_KEY, subscriber_key(item.abonent_id)],
        args=[item.message_id, item.abonent_id, item.model_dump_json()],
    )
    return bool(added)


def contains(client: redis.Redis, message_id: str) -> bool:
    return bool(client.hexists(ITEMS_KEY, message_id))


def heads(client: redis.Redis, limit: int) -> list[OutboxItem]:
    """The oldest waiting message of each of the ``limit`` longest-waiting subscribers, oldest first."""
    abonents = [
        str(a.decode() if isinstance(a, bytes) else a) for a in client.zrange(READY_KEY, 0, max(0, limit - 1))
    ]
    if not abonents:
        return []
    pipe = client.pipeline(transaction=False)
    for abonent in abonents:
        pipe.zrange(subscriber_key(int(abonent)), 0, 0)
    firsts = [ids[0] for ids in pipe.execute() if ids]
    if not firsts:
        return []
    raws = client.hmget(ITEMS_KEY, firsts)
    return [OutboxItem.model_validate_json(raw) for raw in raws if raw is not None]


def update(client: redis.Redis, item: OutboxItem) -> None:
    """Store ``item``'s new failure count (it keeps its place at the head of its subscriber)."""
    client.hset(ITEMS_KEY, item.message_id, item.model_dump_json())


def remove(client: redis.Redis, item: OutboxItem) -> None:
    """Done with ``item`` (posted or dead-lettered): the subscriber's next message becomes its head."""
    script = client.register_script(_REMOVE)
    script(
        keys=[ITEMS_KEY, READY_KEY, subscriber_key(item.abonent_id)],
        args=[item.message_id, item.abonent_id],
    )


def waiting(client: redis.Redis) -> int:
    """Messages waiting in the outbox."""
    return int(client.hlen(ITEMS_KEY))


def subscribers_waiting(client: redis.Redis) -> int:
    """Subscribers with a waiting message: how many messages the next batch can carry."""
    return int(client.zcard(READY_KEY))


__all__ = [
    "OutboxItem",
    "add",
    "contains",
    "heads",
    "remove",
    "subscriber_key",
    "subscribers_waiting",
    "update",
    "waiting",
]
