"""``flows.resend_stalled_messages``: publish again the work the in-flight ledger still holds.

Beat runs it every ``STALLED_SWEEP_INTERVAL`` seconds (``tasks/runtime/schedule.py``); see
:mod:`tasks.state.inflight` for why the ledger exists. Each entry older than ``STALLED_MESSAGE_AFTER`` is
checked against its last effect marker first: done work that was never struck out (the worker died
between the two writes) is only struck out (of the ledger and its subscriber's order queue);
everything else is published again, which the effect markers make safe. An entry that cannot be
read (or is of an unknown kind) is moved aside and dead-lettered
(:func:`tasks.state.inflight.move_aside`), so it never blinds later sweeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis
from loguru import logger
from pydantic import ValidationError

from schemas.dead_letters import DeadLetter, DeadLetterKind, DeadLetterReason
from schemas.flows import OperatorReplyPayload, ResendStalledPayload, ResendStalledResult, SubscriberMessage
from tasks.flows import operator_reply
from tasks.flows.chat import STEP as POST_STEP
from tasks.flows.incoming_message import start_chain
from tasks.flows.operator_reply import enqueue_operator_reply
from tasks.runtime import metrics
from tasks.runtime.operation import operation
from tasks.runtime.queues import Queue
from tasks.runtime.resources import redis_client
from tasks.settings import get_settings
from tasks.state import dead_letters, effects, inflight, order


@dataclass(frozen=True)
class WorkKind:
    """What the sweep needs per kind of ledger entry."""

    last_step: str  # the effect marker that says the work is done
    publish: Callable[[inflight.InFlight], object]  # publish it again


KINDS = {
    inflight.MESSAGE: WorkKind(
        POST_STEP, lambda entry: start_chain(SubscriberMessage.model_validate(entry.payload))
    ),
    inflight.REPLY: WorkKind(
        operator_reply.STATUS_STEP,
        lambda entry: enqueue_operator_reply(OperatorReplyPayload.model_validate(entry.payload), entry.key),
    ),
}


SWEEP_ROUNDS = 20  # batches of ``limit`` per run at most; each handled entry leaves the window


@operation(
    "flows.resend_stalled_messages",
    queue=Queue.FLOWS,
    payload=ResendStalledPayload,
    result=ResendStalledResult,
)
def resend_stalled_messages(payload: ResendStalledPayload) -> ResendStalledResult:
    """Publish again every subscriber message or operator reply in flight for too long."""
    cache, settings = redis_client(), get_settings()
    older_than = settings.stalled_message_after if payload.older_than is None else payload.older_than
    outcome = ResendStalledResult(in_flight=0)
    for _ in range(SWEEP_ROUNDS):
        batch = inflight.stalled(cache, older_than, payload.limit)
        for entry in batch:
            with logger.contextualize(message_id=entry.key):
                _sweep_one(cache, entry, older_than, outcome)
        # Every handled entry left the window (resent: new score; settled or moved aside: gone), so a
        # full batch means more may wait behind it.
        if len(batch) < payload.limit:
            break
    outcome.in_flight = inflight.count(cache)
    return outcome


def _sweep_one(
    cache: redis.Redis, entry: inflight.InFlight, older_than: float, outcome: ResendStalledResult
) -> None:
    kind = KINDS.get(entry.kind)
    if entry.error is not None or kind is None:
        _move_aside(cache, entry, entry.error or f"unknown kind {entry.kind!r}", outcome)
        return
    marker = effects.recall(cache, entry.key, kind.last_step)
    if marker is not None and marker.done:
        inflight.settle(cache, entry.key)
        order.release(cache, entry.key, entry.payload)
        outcome.settled.append(entry.key)
        return
    logger.warning(
        "{} in flight for more than {:g}s without its last step: publishing it again", entry.kind, older_than
    )
    try:
        kind.publish(entry)
    except ValidationError as exc:  # written by an incompatible version; broker errors still raise
        _move_aside(cache, entry, f"payload cannot be read: {exc}"[:500], outcome)
        return
    metrics.MESSAGES_RESENT.inc()
    outcome.resent.append(entry.key)


def _move_aside(
    cache: redis.Redis, entry: inflight.InFlight, error: str, outcome: ResendStalledResult
) -> None:
    """Out of the sweep's window for good: kept in ``rdb24:inflight:unreadable`` and as a dead letter.

    The dead letter first: if it cannot be stored the entry stays in the ledger (seen again next run).
    """
    dead_letters.store().add(
        DeadLetter(
            kind=DeadLetterKind.INFLIGHT_ENTRY,
            name=inflight.LEDGER_KEY,
            payload=entry.raw,
            reason=DeadLetterReason.UNREADABLE,
            error=f"in-flight entry {entry.key} cannot be resent: {error}",
            source={"ledger_key": entry.key, "message_id": entry.key, "kind": entry.kind},
        )
    )
    inflight.move_aside(cache, entry, error)
    metrics.INFLIGHT_UNREADABLE.inc()
    logger.error("in-flight entry cannot be read ({}); moved aside and dead-lettered", error)
    outcome.unreadable.append(entry.key)


__all__ = ["resend_stalled_messages"]
