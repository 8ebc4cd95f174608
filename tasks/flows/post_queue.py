"""Handing a message to the outbox and making sure a flush comes for it.

Kept apart from the flusher (:mod:`tasks.flows.post_batch`), which imports :mod:`tasks.flows.chat`:
the post step only needs this much.

The flush is scheduled once per window: the first message sets ``OUTBOX_KICK`` (``SET NX``) and
sends ``bitrix24.flush_posts`` with a countdown of ``POST_BATCH_WINDOW`` (scaled down to nothing while
the portal's bucket is empty: :func:`window`); the messages arriving meanwhile
find the key and only join the outbox. The flusher deletes the key before each look at the outbox,
so a message added after that look schedules the next flush itself. When as many subscribers wait as
one request may carry (``POST_BATCH_SIZE``), the flush is sent at once instead. The key expires, so a
flush lost with a killed worker holds nothing up for long (and the in-flight ledger resends the
message's chain in the worst case, which lands here again and kicks).
"""

from __future__ import annotations

import redis

from schemas.flows import PostToChatPayload
from tasks.runtime.app import app
from tasks.runtime.resources import bitrix24_client
from tasks.settings import Settings
from tasks.state import keys, outbox

FLUSH_TASK = "bitrix24.flush_posts"
KICK_KEY = keys.OUTBOX_KICK
FULL_KICK_KEY = f"{keys.OUTBOX_KICK}:full"
KICK_SLACK_MS = 5000  # the kick outlives its window by this much before another may be scheduled


def window(configured: float, used: float) -> float:
    """The batching window to use now: none while the portal's bucket is empty (a request is cheap,
    latency comes first), the configured one once it is half full (requests are what runs out)."""
    return configured * min(1.0, max(0.0, used) * 2)


def kick(cache: redis.Redis, settings: Settings, *, countdown: float | None = None) -> bool:
    """Schedule one flush for this window (``countdown`` defaults to the window); True if we did."""
    if countdown is None:
        delay = window(settings.post_batch_window, bitrix24_client().rate_pressure()[1])
    else:
        delay = max(0.0, countdown)
    if not cache.set(KICK_KEY, "1", nx=True, px=int(delay * 1000) + KICK_SLACK_MS):
        return False
    app.send_task(FLUSH_TASK, kwargs={}, countdown=delay or None)
    return True


def kick_now(cache: redis.Redis) -> None:
    """A full batch is waiting: flush without waiting out the window (once per half second)."""
    if cache.set(FULL_KICK_KEY, "1", nx=True, px=500):
        app.send_task(FLUSH_TASK, kwargs={})


def kick_later(countdown: float) -> None:
    """Another flush, whatever the kick key says: a flush found the lease busy and steps back."""
    app.send_task(FLUSH_TASK, kwargs={}, countdown=max(0.05, countdown))


def queue_post(cache: redis.Redis, payload: PostToChatPayload, settings: Settings) -> bool:
    """Put the message in the outbox (once) and make sure a flush will take it; True if newly added."""
    item = outbox.OutboxItem(
        message_id=payload.message.message_id,
        abonent_id=payload.message.abonent_id,
        payload=payload.model_dump(mode="json"),
    )
    added = outbox.add(cache, item)
    if not kick(cache, settings) and outbox.subscribers_waiting(cache) >= settings.post_batch_size:
        kick_now(cache)
    return added


__all__ = ["FLUSH_TASK", "kick", "kick_later", "kick_now", "queue_post", "window"]
