"""The incoming subscriber message chain and its entry points.

``flows.lookup_account`` -> ``bitrix24.find_or_create_contact`` -> ``flows.post_to_chat``; each step's
JSON result is the next step's payload (see :mod:`schemas.flows`). Every task id is derived from the
Kafka message id (``topic:partition:offset``): ``msg:<id>:lookup|contact|post``, so a message
enqueued twice (Kafka redelivery after a crash of the ingest worker) produces the same task ids, and
the per-step effect markers make the second run return the first run's results.

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
from tasks.flows import contact_batch
from tasks.flows.chat import post_to_chat
from tasks.flows.contact import contact_fields, find_or_create_contact
from tasks.runtime.operation import operation
from tasks.runtime.publishing import QUICK_PUBLISH_RETRY_POLICY
from tasks.runtime.queues import Queue
from tasks.runtime.resources import redis_client, rosdomofon_api
from tasks.settings import get_settings
from tasks.state import accounts_index, effects, inflight

LOOKUP_STEP = "lookup"
STEPS = ("lookup", "contact", "post")


def step_task_id(message_id: str, step: str) -> str:
    return f"msg:{message_id}:{step}"


@operation(
    "flows.lookup_account", queue=Queue.FLOWS, payload=LookupAccountPayload, result=LookupAccountResult
)
def lookup_account(payload: LookupAccountPayload) -> LookupAccountResult:
    """The subscriber's RosDomofon account by owner phone (None: no account; the flow goes on)."""
    cache, settings = redis_client(), get_settings()
    message_id = payload.message.message_id if payload.message else None
    with logger.contextualize(message_id=message_id):
        if message_id is not None:
            marker = effects.recall(cache, message_id, LOOKUP_STEP)
            if marker is not None and marker.done and marker.result is not None:
                return LookupAccountResult.model_validate(marker.result)
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
                cache, message_id, LOOKUP_STEP, result.model_dump(mode="json"), ttl=settings.effect_marker_ttl
            )
        if settings.contact_batch_window > 0:
            # A new subscriber's contact joins the next contact batch before its own step runs.
            contact_batch.announce(
                cache, payload.phone, contact_fields(payload.phone, account, payload.abonent_id)
            )
        if account is None:
            logger.info("no RosDomofon account for the subscriber's phone")
        else:
            logger.info("subscriber's account is {} ({})", account.account_id, account.number)
        return result


def message_chain(message: SubscriberMessage) -> Signature:
    """The three-step chain for one message, with deterministic task ids."""
    first = LookupAccountPayload(phone=message.phone, abonent_id=message.abonent_id, message=message)
    return chain(
        lookup_account.signature(
            kwargs=first.model_dump(mode="json"), task_id=step_task_id(message.message_id, "lookup")
        ),
        find_or_create_contact.signature(task_id=step_task_id(message.message_id, "contact")),
        post_to_chat.signature(task_id=step_task_id(message.message_id, "post")),
    )


def start_chain(message: SubscriberMessage) -> str:
    """Publish the chain; returns the last step's task id once the broker accepted it.

    The ledger entry is written first: a chain published but never recorded could be lost unseen.
    """
    inflight.track(redis_client(), message.message_id, inflight.MESSAGE, message)
    result = message_chain(message).apply_async(retry_policy=QUICK_PUBLISH_RETRY_POLICY)
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
    message: KafkaIncomingMessage, message_id: str, sent_at: int | None = None
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
            sent_at=sent_at,
        )
    except ValueError as exc:
        raise IncomingMessageError(f"message {message_id}: {exc}") from None


def enqueue_incoming_message(
    message: KafkaIncomingMessage, message_id: str, sent_at: int | None = None
) -> str:
    """Start the chain for one Kafka record; returns once the broker accepted it.

    ``message_id`` is ``topic:partition:offset``; ``sent_at`` the record's timestamp in unix seconds.
    Returns the id of the chain's last task (``msg:<id>:post``). Raises
    :class:`IncomingMessageError` for a record that can never be processed (dead-letter it and store
    the offset), and the broker's error (kombu/redis) when publishing failed (do NOT store the offset).
    """
    with logger.contextualize(message_id=message_id):
        parsed = subscriber_message(message, message_id, sent_at)
        task_id = start_chain(parsed)
        logger.info("message chain enqueued")
        return task_id


__all__ = [
    "enqueue_incoming_message",
    "handle_incoming_message",
    "lookup_account",
    "message_chain",
    "step_task_id",
    "subscriber_message",
]
