"""``flows.deliver_operator_reply``: an operator's Open Lines answer back to the subscriber's app.

The dialog's external chat id names the subscriber (``abonent-<id>``); the phone and company come
from the record the message flow keeps. The text loses its BB codes, the operator's files follow as
lines with their names and portal links (the app shows text only, :mod:`tasks.flows.attachments`), a
reply over ``REPLY_MAX_LENGTH`` is split into ordered parts (:mod:`tasks.flows.reply_parts`, each
part under its own marker ``send-part:<i>``); it goes out over RosDomofon REST (``POST /messages``,
channel ``support``) or Kafka ``MESSAGES_OUT_<company>`` (``REPLY_TRANSPORT``), and the delivery is
reported back with ``imconnector.send.status.delivery``.

Sending is bracketed by the effect marker ``done:reply:<chat>:<message>:send``, so a redelivered task
never sends twice once the send is recorded; the delivery report has its own marker.
"""

from __future__ import annotations

import hashlib
from typing import Any

from loguru import logger

from schemas.bitrix24 import DeliveryStatus
from schemas.flows import OperatorReplyPayload, OperatorReplyResult, ReplyTransportUsed
from tasks.errors import ReplyTargetError, UnknownDialogError
from tasks.flows.attachments import files_text
from tasks.flows.reply_parts import split_reply
from tasks.flows.texts import strip_bbcodes
from tasks.runtime.headers import MESSAGE_HEADER
from tasks.runtime.kafka_setup import kafka_client
from tasks.runtime.operation import operation
from tasks.runtime.queues import Queue
from tasks.runtime.resources import bitrix24_client, redis_client, rosdomofon_api
from tasks.settings import ReplyTransport, Settings, get_settings
from tasks.state import effects, inflight, subscribers

SEND_STEP = "send"
PART_STEP = "send-part"
STATUS_STEP = "delivery-status"
CHANNEL = "support"
SEND_LOCK_WAIT = 20.0


def reply_key(payload: OperatorReplyPayload) -> str:
    """The effect-marker id of one operator message (Bitrix24's own ids for it)."""
    return f"reply:{payload.im_chat_id}:{payload.im_message_id}"


def reply_fingerprint(payload: OperatorReplyPayload) -> str:
    """What the operator message says and where: stored with its markers and its dedupe key.

    Bitrix24's ids are unique on one portal, but a portal that starts again empty (the sandbox's, on
    every ``make run``) or another portal behind the same app reuses them: the same key with another
    fingerprint is another reply, never "already delivered". A repeated event carries the same text.
    """
    content = f"{payload.connector}\x1f{payload.line}\x1f{payload.chat_id}\x1f{payload.text}"
    if payload.files:  # a files-only reply has no text: its files tell it apart
        content += "\x1f" + "\x1f".join(f.link for f in payload.files)
    return hashlib.sha256(content.encode()).hexdigest()


def _send(
    settings: Settings, abonent_id: int, record: subscribers.SubscriberRecord | None, text: str
) -> OperatorReplyResult:
    phone = record.phone if record else None
    if settings.reply_transport == ReplyTransport.KAFKA:
        # clients.kafka (issue 5): MESSAGES_OUT_<COMPANY_SHORT_NAME>, acks=all, waits for the broker.
        delivered = kafka_client().send_message(
            abonent_id, int(phone) if phone else 0, text, record.company_id if record else None
        )
        return OperatorReplyResult(
            abonent_id=abonent_id,
            phone=phone,
            transport=ReplyTransportUsed.KAFKA,
            text=text,
            rosdomofon_message_id=f"{delivered.topic}:{delivered.partition}:{delivered.offset}",
        )
    recipient = {"id": abonent_id, "phone": int(phone) if phone else 0}
    results = rosdomofon_api().send_message([recipient], channel=CHANNEL, message=text)
    failed = [r for r in results if not r.success]
    if failed:
        raise ReplyTargetError(
            f"RosDomofon refused the reply to abonent {abonent_id}: {failed[0].result!r}"[:300]
        )
    return OperatorReplyResult(
        abonent_id=abonent_id,
        phone=phone,
        transport=ReplyTransportUsed.REST,
        text=text,
        rosdomofon_message_id=results[0].id if results else None,
    )


def _already_sent(
    settings: Settings, abonent_id: int, record: subscribers.SubscriberRecord | None, text: str
) -> OperatorReplyResult | None:
    """After an interrupted send, the subscriber's support history tells whether it went out."""
    if settings.reply_transport != ReplyTransport.REST:
        return None
    history = rosdomofon_api().get_abonent_messages(abonent_id, channel=CHANNEL, page=0, size=20)
    for item in history.content:
        if not item.incoming and item.message == text:
            logger.info("reply already in the subscriber's history (message {}); not sending again", item.id)
            return OperatorReplyResult(
                abonent_id=abonent_id,
                phone=record.phone if record else None,
                transport=ReplyTransportUsed.REST,
                text=text,
                rosdomofon_message_id=item.id,
            )
    return None


def reply_text(payload: OperatorReplyPayload) -> str:
    """What the subscriber reads: the operator's words without BB codes, then one line per file."""
    words = strip_bbcodes(payload.text)
    files = files_text(payload.files)
    return "\n".join(part for part in (words, files) if part)


def _send_parts(
    settings: Settings, cache: Any, key: str, fingerprint: str, abonent_id: int, parts: list[str]
) -> OperatorReplyResult:
    """Send the reply, or each of its parts once and in order; an interrupted send is looked for first.

    Part ``i`` of a split reply has its own marker ``send-part:<i>``, so a redelivered task resumes at
    the first part not recorded as sent instead of sending the reply's beginning again. A reply that
    fits is sent under the reply's own ``send`` marker, as it always was.
    """
    ttl = settings.effect_marker_ttl
    record = subscribers.recall(cache, abonent_id)
    sent: list[OperatorReplyResult] = []
    for number, part in enumerate(parts, 1):
        step = SEND_STEP if len(parts) == 1 else f"{PART_STEP}:{number}"
        marker = effects.recall(cache, key, step, fingerprint)
        if step != SEND_STEP and marker is not None and marker.done and marker.result is not None:
            sent.append(OperatorReplyResult.model_validate(marker.result))
            continue
        previous = effects.mark_started(cache, key, step, ttl=ttl, fingerprint=fingerprint)
        one = (_already_sent(settings, abonent_id, record, part) if previous else None) or _send(
            settings, abonent_id, record, part
        )
        if step != SEND_STEP:
            effects.mark_done(cache, key, step, one.model_dump(mode="json"), ttl=ttl, fingerprint=fingerprint)
        sent.append(one)
    if len(sent) == 1:
        return sent[0]
    return sent[-1].model_copy(
        update={"text": "\n".join(r.text for r in sent), "parts": [r.rosdomofon_message_id for r in sent]}
    )


def _report_delivery(payload: OperatorReplyPayload) -> None:
    status = DeliveryStatus.model_validate(
        {
            "im": {"chat_id": payload.im_chat_id, "message_id": payload.im_message_id},
            "message": {"id": [str(payload.im_message_id)]},
            "chat": {"id": payload.chat_id},
        }
    )
    bitrix24_client().send_delivery_status(payload.connector, payload.line, [status])


@operation(
    "flows.deliver_operator_reply",
    queue=Queue.FLOWS,
    payload=OperatorReplyPayload,
    result=OperatorReplyResult,
)
def deliver_operator_reply(payload: OperatorReplyPayload) -> OperatorReplyResult:
    """Send the operator's message to the subscriber once, then mark it delivered in the Open Line."""
    settings, cache = get_settings(), redis_client()
    key, fingerprint = reply_key(payload), reply_fingerprint(payload)
    ttl = settings.effect_marker_ttl
    with logger.contextualize(message_id=key):
        try:
            abonent_id = subscribers.abonent_of_dialog(payload.chat_id)
        except UnknownDialogError as exc:
            raise ReplyTargetError(str(exc)) from None
        # One sender at a time per operator message: a duplicate task running alongside waits here
        # and then finds the first one's marker.
        with effects.locked(cache, key, wait=SEND_LOCK_WAIT):
            marker = effects.recall(cache, key, SEND_STEP, fingerprint)
            if marker is not None and marker.done and marker.result is not None:
                result = OperatorReplyResult.model_validate(marker.result)
            else:
                text = reply_text(payload)
                if not text:
                    raise ReplyTargetError(
                        f"operator message {payload.im_message_id} has no text and no file to deliver"
                    )
                parts = split_reply(text, settings.reply_max_length)
                result = _send_parts(settings, cache, key, fingerprint, abonent_id, parts)
                effects.mark_done(
                    cache, key, SEND_STEP, result.model_dump(mode="json"), ttl=ttl, fingerprint=fingerprint
                )
                logger.info(
                    "operator reply sent to abonent {} via {} in {} part(s)",
                    abonent_id, result.transport.value, len(parts),
                )  # fmt: skip
        status = effects.recall(cache, key, STATUS_STEP, fingerprint)
        if status is None or not status.done:
            _report_delivery(payload)
            effects.mark_done(cache, key, STATUS_STEP, {"reported": True}, ttl=ttl, fingerprint=fingerprint)
            logger.info("delivery reported to open line {}", payload.line)
        inflight.settle(cache, key)
        return result.model_copy(update={"delivery_reported": True})


def reply_task_id(im_chat_id: int, im_message_id: int) -> str:
    """Deterministic id of the reply task: the same operator message always maps to the same task."""
    return f"reply:{im_chat_id}:{im_message_id}"


def enqueue_operator_reply(payload: OperatorReplyPayload, task_id: str) -> Any:
    """Default enqueue: publish ``flows.deliver_operator_reply``; returns once the broker accepted it.

    The reply enters the in-flight ledger first (``tasks/state/inflight.py``), keyed by the task id, which
    also rides in the message header the task layer reads as the message id, so a dead letter of
    the reply strikes it out.
    """
    inflight.track(redis_client(), task_id, inflight.REPLY, payload)
    return deliver_operator_reply.apply_async(
        kwargs=payload.model_dump(mode="json"), task_id=task_id, headers={MESSAGE_HEADER: task_id}
    )


__all__ = [
    "deliver_operator_reply",
    "enqueue_operator_reply",
    "reply_fingerprint",
    "reply_key",
    "reply_task_id",
    "reply_text",
]
