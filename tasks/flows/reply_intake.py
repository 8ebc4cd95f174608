"""Where operator replies enter: one event's messages as reply tasks, each published once.

Two sources feed it: the webhook receiver's spool (``tasks.webhook.drain``) and, where enabled, the
portal's offline event queue (``flows.poll_offline_events``). Both may carry the same reply; both
forward it here, so it is published once.

:func:`forward` is the one place that dedupes: ``rdb24:reply:enqueued:<task id>`` is claimed with
``SET NX`` as ``pending:<fingerprint>`` (``CLAIM_TTL`` seconds) before the publish and set to the
reply's fingerprint (``EFFECT_MARKER_TTL``) after it. A second copy finds its own fingerprint (or a
key from before fingerprints, ``1``) and is dropped; one that finds ``pending`` is being published
right now, or by a process that died mid-publish: the caller keeps it and tries again once the claim
expired. Another fingerprint under the same ids is another message (ids reused): it is published.
The task id is deterministic (``reply:<chat>:<message>``) and the task's effect markers refuse a
second send, so a publish repeated after a crash costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import redis
from loguru import logger

from schemas.bitrix24 import EventData
from schemas.flows import OperatorReplyPayload
from tasks.flows.attachments import reply_files
from tasks.flows.operator_reply import reply_fingerprint, reply_task_id
from tasks.runtime import metrics
from tasks.state import keys

ENQUEUED_PREFIX = keys.REPLY_ENQUEUED_PREFIX
CLAIM_TTL = 30  # seconds a publish in progress keeps other copies of the reply waiting
PENDING = "pending"

Enqueue = Callable[[OperatorReplyPayload, str], Any]


class Forwarded(StrEnum):
    ENQUEUED = "enqueued"
    DUPLICATE = "duplicate"  # already enqueued by an earlier copy of the event
    BUSY = "busy"  # another publish of it is in progress (or died): keep it, try later


def replies_of(data: EventData) -> list[tuple[str, OperatorReplyPayload]]:
    """``(task id, payload)`` for each message of an ``ONIMCONNECTORMESSAGEADD``, in its order."""
    found = []
    for item in data.MESSAGES:
        payload = OperatorReplyPayload(
            connector=data.CONNECTOR,
            line=data.LINE,
            chat_id=item.chat.id,
            im_chat_id=item.im.chat_id,
            im_message_id=item.im.message_id,
            text=item.message.text,
            files=reply_files(item.message.files),
            operator_user_id=item.message.user_id,
        )
        found.append((reply_task_id(payload.im_chat_id, payload.im_message_id), payload))
    return found


def forward(
    client: redis.Redis, enqueue: Enqueue, payload: OperatorReplyPayload, task_id: str, *, dedupe_ttl: int
) -> Forwarded:
    """Publish one reply unless an earlier copy was; raises when Redis or the broker fail."""
    key, fingerprint = f"{ENQUEUED_PREFIX}:{task_id}", reply_fingerprint(payload)
    claim = f"{PENDING}:{fingerprint}"
    if not client.set(key, claim, nx=True, ex=CLAIM_TTL):
        state = client.get(key)
        if state is None:  # the claim expired between the two calls: take it next time
            return Forwarded.BUSY
        seen = state.decode() if isinstance(state, bytes) else str(state)
        if seen.startswith(PENDING):
            return Forwarded.BUSY
        if seen == fingerprint or len(seen) != len(
            fingerprint
        ):  # a repeat, or a key from before fingerprints
            return Forwarded.DUPLICATE
        # The same Bitrix24 ids with another fingerprint are another message (a portal that started
        # again empty reuses them): logged, counted, and published.
        logger.warning("reply intake: {} was another operator message before (ids reused); enqueued", key)
        metrics.MESSAGE_ID_CONFLICTS.inc(step="webhook")
        client.set(key, claim, ex=CLAIM_TTL)
    try:
        enqueue(payload, task_id)
    except BaseException:
        with contextlib.suppress(redis.RedisError):  # else the claim expires by itself
            client.delete(key)  # let the next attempt go at once
        raise
    client.set(key, fingerprint, ex=dedupe_ttl)
    return Forwarded.ENQUEUED


__all__ = ["CLAIM_TTL", "Enqueue", "Forwarded", "forward", "replies_of"]
