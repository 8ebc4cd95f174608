"""``flows.poll_offline_events``: the portal's offline event queue as a second source of replies.

Bitrix24 sends an event once; the receiver's spool keeps every event it answered, but an event that
never reached the receiver (it was down, the network failed) is gone, unless the portal also keeps
it. Where ``ONIMCONNECTORMESSAGEADD`` can be bound with ``event_type=offline`` the portal queues each
reply, and beat runs this task every ``OFFLINE_EVENTS_INTERVAL`` seconds (off unless
``OFFLINE_EVENTS_ENABLED``: whether connector events can be bound offline is not documented).

Each pass takes records with ``event.offline.get`` (``clear=0``: they are ours under a process id and
come back to the same id), forwards each reply through :mod:`tasks.flows.reply_intake` (so a reply the
receiver already enqueued is dropped) and only then ``event.offline.clear``-s them. The process id is
kept in Redis until the clear succeeded, so records taken by a run that died are taken again.
"""

from __future__ import annotations

import redis
from loguru import logger
from pydantic import ValidationError

from clients.errors import FixInputError
from schemas.bitrix24 import MESSAGE_EVENT, EventData
from schemas.flows import PollOfflineEventsPayload, PollOfflineEventsResult
from tasks.errors import LockBusyError
from tasks.flows.operator_reply import enqueue_operator_reply
from tasks.flows.reply_intake import CLAIM_TTL, Forwarded, forward, replies_of
from tasks.runtime.operation import operation
from tasks.runtime.queues import Queue
from tasks.runtime.resources import bitrix24_client, redis_client
from tasks.settings import get_settings
from tasks.state import keys

BOUND_KEY = keys.OFFLINE_BOUND
PROCESS_KEY = keys.OFFLINE_PROCESS
BOUND_TTL = 24 * 3600  # bind again daily: bindings vanish when the app is reinstalled
PROCESS_TTL = 24 * 3600


def _ensure_bound(cache: redis.Redis) -> None:
    if cache.get(BOUND_KEY) is not None:
        return
    try:
        bitrix24_client().bind_offline_event(MESSAGE_EVENT)
    except FixInputError as exc:  # "handler already bound" is success for us
        logger.info("offline events: event.bind answered {}; treating as already bound", exc.code)
    cache.set(BOUND_KEY, "1", ex=BOUND_TTL)


@operation(
    "flows.poll_offline_events",
    queue=Queue.FLOWS,
    payload=PollOfflineEventsPayload,
    result=PollOfflineEventsResult,
)
def poll_offline_events(payload: PollOfflineEventsPayload) -> PollOfflineEventsResult:
    """Publish the replies waiting in the portal's offline queue that the receiver never got."""
    settings, cache = get_settings(), redis_client()
    if not settings.offline_events_enabled:
        return PollOfflineEventsResult(enabled=False)
    _ensure_bound(cache)
    portal = bitrix24_client()
    result = PollOfflineEventsResult(enabled=True)
    for _ in range(payload.max_calls):
        kept = cache.get(PROCESS_KEY)
        process_id = (kept.decode() if isinstance(kept, bytes) else kept) or None
        process_id, records = portal.offline_events(MESSAGE_EVENT, process_id=process_id, limit=payload.limit)
        if not records or process_id is None:
            break
        cache.set(PROCESS_KEY, process_id, ex=PROCESS_TTL)
        result.records += len(records)
        for record in records:
            _forward_record(record, settings.effect_marker_ttl, result)
        portal.clear_offline_events(process_id, [str(r.get("ID")) for r in records])
        cache.delete(PROCESS_KEY)
        if len(records) < payload.limit:
            break
    if result.enqueued:
        missed = len(result.enqueued)
        logger.warning("offline events: {} repl(ies) the receiver never got were enqueued", missed)
    return result


def _forward_record(record: dict, dedupe_ttl: int, result: PollOfflineEventsResult) -> None:
    try:
        data = EventData.model_validate(record.get("EVENT_DATA") or {})
    except ValidationError as exc:
        logger.error("offline event {} is not a connector message ({}); cleared", record.get("ID"), exc)
        return
    cache = redis_client()
    for task_id, reply in replies_of(data):
        outcome = forward(cache, enqueue_operator_reply, reply, task_id, dedupe_ttl=dedupe_ttl)
        if outcome is Forwarded.BUSY:
            # Another process publishes it right now; a retry takes the same records (kept process id).
            raise LockBusyError(f"reply {task_id} is being published elsewhere", retry_after=float(CLAIM_TTL))
        (result.enqueued if outcome is Forwarded.ENQUEUED else result.duplicates).append(task_id)


__all__ = ["poll_offline_events"]
