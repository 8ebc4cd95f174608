"""``flows.resend_stalled_messages``: publish again the work the in-flight ledger still holds.

Beat runs it every ``STALLED_SWEEP_INTERVAL`` seconds (``tasks/runtime/schedule.py``); see
:mod:`tasks.state.inflight` for why the ledger exists. Each entry older than ``STALLED_MESSAGE_AFTER`` is
checked against its last effect marker first: done work that was never struck out (the worker died
between the two writes) is only struck out (of the ledger and its subscriber's order queue);
everything else is published again, which the effect markers make safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger
from pydantic import ValidationError

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
from tasks.state import effects, inflight, order


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
    resent, settled, unreadable = [], [], []
    for entry in inflight.stalled(cache, older_than, payload.limit):
        with logger.contextualize(message_id=entry.key):
            kind = KINDS.get(entry.kind)
            if kind is None:
                # Oldest first: raising here would stop every later sweep at this same entry.
                logger.error("in-flight entry has unknown kind {!r}; left in the ledger", entry.kind)
                unreadable.append(entry.key)
                continue
            marker = effects.recall(cache, entry.key, kind.last_step)
            if marker is not None and marker.done:
                inflight.settle(cache, entry.key)
                order.release(cache, entry.key, entry.payload)
                settled.append(entry.key)
                continue
            logger.warning(
                "{} in flight for more than {:g}s without its last step: publishing it again",
                entry.kind, older_than,
            )  # fmt: skip
            try:
                kind.publish(entry)
            except ValidationError as exc:  # written by an incompatible version; broker errors still raise
                logger.error("in-flight {} entry cannot be read ({}); left in the ledger", entry.kind, exc)
                unreadable.append(entry.key)
                continue
            metrics.MESSAGES_RESENT.inc()
            resent.append(entry.key)
    return ResendStalledResult(
        resent=resent, settled=settled, unreadable=unreadable, in_flight=inflight.count(cache)
    )


__all__ = ["resend_stalled_messages"]
