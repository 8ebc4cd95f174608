"""The dead-letter store in Redis: what could not be processed, kept until a human replays or deletes it.

Redis has no dead-letter exchange (a rejected message is simply gone), so failures are written here by
the base task (and by the Kafka ingest for unreadable records). Layout: hash ``rdb24:dlq:items``
(id -> JSON) + sorted set ``rdb24:dlq:index`` (id by creation time) for newest-first listing.
Replaying a letter is :mod:`tasks.replay`'s job; this module only keeps them.

The store is bounded by ``DEAD_LETTER_MAX``, but a letter that carries a subscriber message or an
operator reply (a failed chain step or reply task: a task letter with a ``message_id`` in its
source; an unreadable Kafka record) is often the last copy of it, so it is never trimmed. Only the
other letters (a failed reconciliation, a block call) are listed in ``rdb24:dlq:trimmable`` and
dropped oldest first. When the store stays above its bound with nothing left to trim, every further
letter counts in ``rdb24_dead_letter_store_full_total`` and ``rdb24 status`` asks for attention:
replay or delete letters (or raise the bound); nothing is dropped.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import cast

import redis
from loguru import logger

from schemas.dead_letters import DeadLetter, DeadLetterKind
from tasks.errors import DeadLetterNotFound
from tasks.runtime.redaction import redact
from tasks.state import keys

ITEMS_KEY = keys.DLQ_ITEMS
INDEX_KEY = keys.DLQ_INDEX
TRIMMABLE_KEY = keys.DLQ_TRIMMABLE  # ids of letters that carry no message: the only ones trimmed


def carries_message(letter: DeadLetter) -> bool:
    """Whether the letter may be the last copy of a subscriber message or an operator reply."""
    if str(letter.kind) in (DeadLetterKind.KAFKA_RECORD, DeadLetterKind.INFLIGHT_ENTRY):
        return True
    return bool(letter.source.get("message_id"))


def _new_id(created_at: datetime) -> str:
    return f"{created_at.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"


class DeadLetterStore:
    def __init__(self, client: redis.Redis, *, max_items: int = 100_000) -> None:
        self.client = client
        self.max_items = max_items

    def add(self, letter: DeadLetter) -> DeadLetter:
        """Store a record (payload redacted) and return it with its id."""
        letter = letter.model_copy(update={"payload": redact(letter.payload)})
        if not letter.id:
            letter.id = _new_id(letter.created_at)
        pipe = self.client.pipeline()
        pipe.hset(ITEMS_KEY, letter.id, letter.model_dump_json())
        pipe.zadd(INDEX_KEY, {letter.id: letter.created_at.timestamp()})
        if not carries_message(letter):
            pipe.zadd(TRIMMABLE_KEY, {letter.id: letter.created_at.timestamp()})
        pipe.execute()
        from tasks.runtime import metrics

        trimmed = self._trim()
        if not trimmed:
            metrics.DEAD_LETTERS_OVER_LIMIT.inc()
        metrics.DEAD_LETTER_STORE_FULL.set(0 if trimmed else 1)

        metrics.DEAD_LETTERS.inc(kind=str(letter.kind), name=letter.name)
        logger.error("dead letter {} {} {}: {}", letter.id, letter.kind, letter.name, letter.error)
        return letter

    def _trim(self) -> bool:
        """Drop the oldest trimmable letters above the bound; False when the store stays above it."""
        dropped = 0
        for _ in range(10):  # a trimmable id whose letter is gone frees nothing: look again, bounded
            excess = self.client.zcard(INDEX_KEY) - self.max_items
            if excess <= 0:
                break
            oldest = self.client.zrange(TRIMMABLE_KEY, 0, excess - 1)
            if not oldest:
                break
            pipe = self.client.pipeline()
            pipe.hdel(ITEMS_KEY, *oldest)
            pipe.zrem(INDEX_KEY, *oldest)
            pipe.zrem(TRIMMABLE_KEY, *oldest)
            removed, _, _ = pipe.execute()
            dropped += int(removed)
        if dropped:
            logger.warning("dead-letter store full: dropped {} oldest letters that carry no message", dropped)
        if self.full():
            logger.error(
                "dead-letter store holds {} letters, above DEAD_LETTER_MAX={}, and the rest carry messages: "
                "nothing dropped; replay or delete letters",
                self.count(), self.max_items,
            )  # fmt: skip
            return False
        return True

    def full(self) -> bool:
        """Above its bound with only letters that must be kept: needs a human."""
        return self.count() > self.max_items

    def get(self, letter_id: str) -> DeadLetter:
        raw = self.client.hget(ITEMS_KEY, letter_id)
        if raw is None:
            raise DeadLetterNotFound(letter_id)
        return DeadLetter.model_validate_json(raw)

    def list(self, *, limit: int = 50, offset: int = 0, name: str | None = None) -> list[DeadLetter]:
        """Newest first; ``name`` filters by task name or topic."""
        # redis-py types every range reply as one union; without withscores it is the members alone.
        ids = cast(
            "list[bytes | str]",
            self.client.zrevrange(INDEX_KEY, 0, -1)
            if name
            else self.client.zrevrange(INDEX_KEY, offset, offset + limit - 1),
        )
        if not ids:
            return []
        letters = [DeadLetter.model_validate_json(raw) for raw in self.client.hmget(ITEMS_KEY, ids) if raw]
        if name:
            letters = [letter for letter in letters if letter.name == name][offset : offset + limit]
        return letters

    def count(self) -> int:
        return int(self.client.zcard(INDEX_KEY))

    def delete(self, letter_id: str) -> bool:
        pipe = self.client.pipeline()
        pipe.hdel(ITEMS_KEY, letter_id)
        pipe.zrem(INDEX_KEY, letter_id)
        pipe.zrem(TRIMMABLE_KEY, letter_id)
        removed, _, _ = pipe.execute()
        if removed and not self.full():
            from tasks.runtime import metrics

            metrics.DEAD_LETTER_STORE_FULL.set(0)
        return bool(removed)


def store() -> DeadLetterStore:
    """The store on the configured Redis (one client per process)."""
    from tasks.runtime.resources import redis_client
    from tasks.settings import get_settings

    return DeadLetterStore(redis_client(), max_items=get_settings().dead_letter_max)


def now() -> datetime:
    return datetime.now(UTC)
