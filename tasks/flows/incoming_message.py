"""The incoming subscriber message chain and its entry points.

``flows.lookup_account`` -> ``bitrix24.find_or_create_contact`` -> ``flows.post_to_chat``; each step's
JSON result is the next step's payload (see :mod:`schemas.flows`). Every task id is derived from the
message id (topic, record timestamp, value hash: :mod:`tasks.ingest.identity`):
``msg:<id>:lookup|contact|post``, so a message enqueued twice (Kafka redelivery after a crash of the
ingest worker, or a producer's retry duplicate at another offset) produces the same task ids, and the
per-step effect markers make the second run return the first run's results.

Each message with a record timestamp also enters its subscriber's order queue
(:mod:`tasks.state.order`) with the ledger entry; the post step waits for the subscriber's earlier
messages (:mod:`tasks.flows.chat`). :func:`resume_chain` is the dead-letter replay of any step: it
runs that step and every later one, and enters the ledger (and the order queue) again.

:func:`enqueue_incoming_message` is what the Kafka ingest worker calls; it returns only after the
broker accepted the chain, so the ingest worker may then store the Kafka offset. Each message is
entered in the in-flight ledger first (:mod:`tasks.state.inflight`); ``flows.resend_stalled_messages``
(:mod:`tasks.flows.stalled`) enqueues again any message still there long after.
"""

from __future__ import annotations

from celery import chain
from celery.canvas import Signature
from loguru import logger

from schemas.flows import (
    HandleIncomingMessageResult,
    LookupAccountPayload,
    LookupAccountResult,
    SubscriberMessage,
)
from schemas.kafka import KafkaIncomingMessage
from tasks.errors import IncomingMessageError
from tasks.flows.chat import post_to_chat
from tasks.flows.contact import find_or_create_contact
from tasks.runtime.operation import operation
from tasks.runtime.publishing import QUICK_PUBLISH_RETRY_POLICY
from tasks.runtime.queues import Queue
from tasks.runtime.resources import redis_client, rosdomofon_api
from tasks.settings import get_settings
from tasks.state import accounts_index, effects, inflight, order

LOOKUP_STEP = "lookup"
STEPS = ("lookup", "contact", "post")
STEP_TASKS = {
    "lookup": "flows.lookup_account",
    "contact": "bitrix24.find_or_create_contact",
    "post": "flows.post_to_chat",
}


def step_task_id(message_id: str, step: str) -> str:
    return f"msg:{message_id}:{step}"


@operation(
    "flows.lookup_account", queue=Queue.FLOWS, payload=LookupAccountPayload, result=LookupAccountResult
)
def lookup_account(payload: LookupAccountPayload) -> LookupAccountResult:
    """The subscriber's RosDomofon account by owner phone (None: no account; the flow goes on)."""
    cache, settings = redis_client(), get_settings()
    message_id = payload.message.message_id if payload.message else None
    fingerprint = payload.message.content_fingerprint() if payload.message else None
    with logger.contextualize(message_id=message_id):
        if message_id is not None:
            marker = effects.recall(cache, message_id, LOOKUP_STEP, fingerprint)
            if marker is not None and marker.done and marker.result is not None:
                # The marker keeps the account only; the message (and its text) rides in the payload.
                return LookupAccountResult.model_validate({**marker.result, "message": payload.message})
        account = accounts_index.find_account(
            cache,
            payload.phone,
            rosdomofon_api().get_accounts,
            min_interval=settings.accounts_index_min_refresh,
        )
        result = LookupAccountResult(
            phone=payload.phone, abonent_id=payload.abonent_id, account=account, message=payload.message
        )
        if message_id is not None:
            # Stored so a redelivered chain labels the contact the same way even if the index changed.
            effects.mark_done(
                cache,
                message_id,
                LOOKUP_STEP,
                result.model_dump(mode="json", exclude={"message"}),
                ttl=settings.effect_marker_ttl,
                fingerprint=fingerprint,
            )
        if account is None:
            logger.info("no RosDomofon account for the subscriber's phone")
        else:
            logger.info("subscriber's account is {} ({})", account.account_id, account.number)
        return result


_STEP_SIGNATURES = {"lookup": lookup_account, "contact": find_or_create_contact, "post": post_to_chat}


def chain_from(
    step: str,
    payload: dict,
    task_ids: dict[str, str],
    headers: dict[str, str] | None = None,
) -> Signature:
    """``step`` with ``payload``, then every later step, each with the task id ``task_ids[step]``."""
    steps = STEPS[STEPS.index(step) :]
    options = {"headers": headers} if headers else {}
    signatures = [_STEP_SIGNATURES[step].signature(kwargs=payload, task_id=task_ids[step], **options)]
    signatures += [_STEP_SIGNATURES[s].signature(task_id=task_ids[s], **options) for s in steps[1:]]
    return chain(*signatures)


def message_chain(message: SubscriberMessage) -> Signature:
    """The three-step chain for one message, with deterministic task ids."""
    first = LookupAccountPayload(phone=message.phone, abonent_id=message.abonent_id, message=message)
    ids = {s: step_task_id(message.message_id, s) for s in STEPS}
    return chain_from(LOOKUP_STEP, first.model_dump(mode="json"), ids)


def enter_in_flight(message: SubscriberMessage) -> None:
    """Record the message in the ledger and, when it has a timestamp, its subscriber's order queue."""
    cache = redis_client()
    inflight.track(cache, message.message_id, inflight.MESSAGE, message)
    if message.sent_at is not None:
        ttl = get_settings().effect_marker_ttl
        order.enter(cache, message.abonent_id, message.message_id, message.sent_at, ttl=ttl)


def start_chain(message: SubscriberMessage) -> str:
    """Publish the chain; returns the last step's task id once the broker accepted it.

    The ledger entry is written first: a chain published but never recorded could be lost unseen.
    """
    enter_in_flight(message)
    result = message_chain(message).apply_async(retry_policy=QUICK_PUBLISH_RETRY_POLICY)
    return str(result.id)


def chain_step(task_name: str) -> str | None:
    """The chain step a task name runs (``lookup``, ``contact``, ``post``), None for other tasks."""
    return next((step for step, name in STEP_TASKS.items() if name == task_name), None)


def resume_chain(task_name: str, payload: dict, task_id: str, headers: dict[str, str]) -> str | None:
    """Replay a dead-lettered chain step and every step after it; None when it is not a chain step.

    ``task_id`` (derived from the dead letter's id) names the replayed step; the later steps get
    ``<task_id>:<step>``, so replaying the same letter again publishes the same tasks again, and
    the effect markers keep the contact and the post single. The message enters the in-flight
    ledger again before anything is published, as in :func:`start_chain`.
    """
    step = chain_step(task_name)
    nested = payload.get("message")
    if step is None or not isinstance(nested, dict):
        return None
    message = SubscriberMessage.model_validate(nested)
    enter_in_flight(message)
    ids = {s: task_id if s == step else f"{task_id}:{s}" for s in STEPS}
    result = chain_from(step, payload, ids, headers).apply_async(retry_policy=QUICK_PUBLISH_RETRY_POLICY)
    return str(result.id)


@operation(
    "flows.handle_incoming_message",
    queue=Queue.FLOWS,
    payload=SubscriberMessage,
    result=HandleIncomingMessageResult,
)
def handle_incoming_message(payload: SubscriberMessage) -> HandleIncomingMessageResult:
    """Entry for other services and the CLI: start the chain for one already-parsed message."""
    with logger.contextualize(message_id=payload.message_id):
        start_chain(payload)
        logger.info("message chain started")
    return HandleIncomingMessageResult(
        message_id=payload.message_id, task_ids=[step_task_id(payload.message_id, s) for s in STEPS]
    )


def subscriber_message(
    message: KafkaIncomingMessage,
    message_id: str,
    sent_at: float | None = None,
    *,
    fingerprint: str | None = None,
    position: str | None = None,
) -> SubscriberMessage:
    """The flow's view of a Kafka record; raises :class:`IncomingMessageError` naming the bad field."""
    sender = message.from_abonent
    if not sender.id or not sender.phone:
        raise IncomingMessageError(
            f"fromAbonent {{id: {sender.id}, phone: {sender.phone}}} is a system message or has no phone"
        )
    try:
        return SubscriberMessage(
            message_id=message_id,
            abonent_id=sender.id,
            phone=str(sender.phone),
            company_id=sender.company_id,
            text=message.text or "",
            image_url=message.image_url or None,
            sent_at=sent_at,
            fingerprint=fingerprint,
            kafka_position=position,
        )
    except ValueError as exc:
        raise IncomingMessageError(f"message {message_id}: {exc}") from None


def enqueue_incoming_message(
    message: KafkaIncomingMessage,
    message_id: str,
    sent_at: float | None = None,
    *,
    fingerprint: str | None = None,
    position: str | None = None,
) -> str:
    """Start the chain for one Kafka record; returns once the broker accepted it.

    ``message_id`` is the record's identity (:mod:`tasks.ingest.identity`), ``fingerprint`` the hash
    of its value, ``position`` its ``topic:partition:offset``; ``sent_at`` the record's timestamp in
    unix seconds.
    Returns the id of the chain's last task (``msg:<id>:post``). Raises
    :class:`IncomingMessageError` for a record that can never be processed (dead-letter it and store
    the offset), and the broker's error (kombu/redis) when publishing failed (do NOT store the offset).
    """
    with logger.contextualize(message_id=message_id, kafka_position=position):
        parsed = subscriber_message(message, message_id, sent_at, fingerprint=fingerprint, position=position)
        task_id = start_chain(parsed)
        logger.info("message chain enqueued")
        return task_id


__all__ = [
    "STEP_TASKS",
    "chain_from",
    "chain_step",
    "enqueue_incoming_message",
    "handle_incoming_message",
    "lookup_account",
    "message_chain",
    "resume_chain",
    "step_task_id",
    "subscriber_message",
]
