"""The dead-letter store in Redis: what could not be processed, kept until a human replays or deletes it.

Redis has no dead-letter exchange (a rejected message is simply gone), so failures are written here by
the base task (and by the Kafka ingest for unreadable records). Layout: hash ``rdb24:dlq:items``
(id -> JSON) + sorted set ``rdb24:dlq:index`` (id by creation time) for newest-first listing.
Replaying a letter is :mod:`tasks.replay`'s job; this module only keeps them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import cast

import redis
from loguru import logger

from schemas.dead_letters import DeadLetter
from tasks.errors import DeadLetterNotFound
from tasks.runtime.redaction import redact
from tasks.state import keys

ITEMS_KEY = keys.DLQ_ITEMS
INDEX_KEY = keys.DLQ_INDEX


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
        pipe.execute()
        self._trim()
        from tasks.runtime import metrics

        metrics.DEAD_LETTERS.inc(kind=str(letter.kind), name=letter.name)
        logger.error("dead letter {} {} {}: {}", letter.id, letter.kind, letter.name, letter.error)
        return letter

    def _trim(self) -> None:
        excess = self.client.zcard(INDEX_KEY) - self.max_items
        if excess > 0:
            oldest = self.client.zrange(INDEX_KEY, 0, excess - 1)
            if oldest:
                self.client.hdel(ITEMS_KEY, *oldest)
                self.client.zrem(INDEX_KEY, *oldest)
                logger.warning("dead-letter store full: dropped {} oldest records", len(oldest))

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
        removed, _ = pipe.execute()
        return bool(removed)


def store() -> DeadLetterStore:
    """The store on the configured Redis (one client per process)."""
    from tasks.runtime.resources import redis_client
    from tasks.settings import get_settings

    return DeadLetterStore(redis_client(), max_items=get_settings().dead_letter_max)


def now() -> datetime:
    return datetime.now(UTC)
