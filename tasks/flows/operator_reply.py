"""``flows.deliver_operator_reply``: an operator's Open Lines answer back to the subscriber's app.

The dialog's external chat id names the subscriber (``abonent-<id>``); the phone and company come
from the record the message flow keeps. The text loses its BB codes, the operator's files follow as
lines with their names and portal links (the app shows text only, :mod:`tasks.flows.attachments`), a
reply over ``REPLY_MAX_LENGTH`` is split into ordered parts (:mod:`tasks.flows.reply_parts`, each
part under its own marker ``send-part:<i>``); it goes out over RosDomofon REST (``POST /messages``,
channel ``support``) or Kafka ``MESSAGES_OUT_<company>`` (``REPLY_TRANSPORT``), and the delivery is
reported back with ``imconnector.send.status.delivery``.

Sending is bracketed by the effect marker ``done:reply:<chat>:<message>:send``, so a redelivered task
never sends twice once the send is recorded; the delivery report has its own marker. A retry that
finds only "started" (a timeout, a 5xx, a kill mid-send) recognises its own send by a history id that
was not there before the first attempt (``tasks/state/reply_sends.py``), never by the text: operators
repeat "Спасибо". Replies of one dialog go out in the operator's order (``tasks/state/reply_order.py``).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from loguru import logger

from schemas.bitrix24 import DeliveryStatus
from schemas.flows import OperatorReplyPayload, OperatorReplyResult, ReplyTransportUsed
from tasks.errors import ReplyNotYetError, ReplyTargetError, UnknownDialogError
from tasks.flows import reply_history
from tasks.flows.attachments import files_text
from tasks.flows.reply_parts import split_reply
from tasks.flows.texts import strip_bbcodes
from tasks.runtime import metrics
from tasks.runtime.headers import MESSAGE_HEADER
from tasks.runtime.kafka_setup import kafka_client
from tasks.runtime.operation import operation
from tasks.runtime.publishing import QUICK_PUBLISH_RETRY_POLICY
from tasks.runtime.queues import Queue
from tasks.runtime.resources import bitrix24_client, redis_client, rosdomofon_api
from tasks.settings import ReplyTransport, Settings, get_settings
from tasks.state import effects, inflight, reply_order, reply_sends, subscribers

SEND_STEP = "send"
PART_STEP = "send-part"
STATUS_STEP = "delivery-status"
CHANNEL = reply_history.CHANNEL
SEND_LOCK_WAIT = 20.0
KAFKA_SETTLE = 10.0  # seconds after an interrupted produce before "not in the history" means "not sent"


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


def _recognised(
    settings: Settings, abonent_id: int, record: subscribers.SubscriberRecord | None, text: str, key: str
) -> OperatorReplyResult | None:
    """After an interrupted send: our own send, recognised by a history id that was not there before.

    None when it did not go out, and also when that cannot be known (the record of what was there
    before is gone): then the reply is sent again and counted, never skipped.
    """
    seen = reply_sends.recall_seen(redis_client(), key)
    if seen is None:
        logger.warning("no record of the history before the first send; sending again (may repeat)")
        metrics.REPLIES_RESENT_UNKNOWN.inc(transport=settings.reply_transport.value)
        return None
    found = reply_history.own_send(abonent_id, text, seen)
    if found is None:
        return None
    logger.info("reply already in the subscriber's history as message {}; not sending again", found.id)
    transport = (
        ReplyTransportUsed.KAFKA
        if settings.reply_transport == ReplyTransport.KAFKA
        else ReplyTransportUsed.REST
    )
    return OperatorReplyResult(
        abonent_id=abonent_id,
        phone=record.phone if record else None,
        transport=transport,
        text=text,
        rosdomofon_message_id=found.id,
    )


def order_wait(settings: Settings) -> tuple[float, float]:
    """(seconds between two looks, longest wait) for a reply held back behind an earlier one.

    Each look is a rate-limit-like retry, so the wait must end within half the task's
    ``MAX_RATE_LIMIT_RETRIES`` (the other half stays for real rate limits), each capped by
    ``RATE_LIMIT_WAIT_MAX``: ``REPLY_ORDER_WAIT`` is shortened when that budget cannot cover it, so a
    waiting reply is sent late rather than dead-lettered.
    """
    looks = max(1, settings.max_rate_limit_retries // 2)
    poll = min(settings.rate_limit_wait_max, max(1.0, settings.reply_order_wait / looks))
    return poll, min(settings.reply_order_wait, poll * looks)


def _wait_for_earlier(settings: Settings, cache: Any, payload: OperatorReplyPayload, key: str) -> None:
    """Hold this reply back while an earlier reply of its dialog is unsent, within REPLY_ORDER_WAIT."""
    dialog, ttl = payload.chat_id, settings.effect_marker_ttl
    reply_order.join(cache, dialog, key, payload.im_message_id, ttl=ttl)
    ahead = reply_order.earlier(cache, dialog, key, payload.im_message_id)
    settled = [other for other in ahead if cache.zscore(inflight.LEDGER_KEY, other) is None]
    reply_order.leave(cache, dialog, *settled)  # sent or dead-lettered without leaving (an old version)
    ahead = [other for other in ahead if other not in settled]
    if not ahead:
        return
    waited = time.time() - reply_order.waiting_since(cache, dialog, key, ttl=ttl)
    poll, bound = order_wait(settings)
    if waited < bound:
        raise ReplyNotYetError(
            f"{len(ahead)} earlier repl(ies) of {dialog} unsent, first {ahead[0]}", retry_after=poll
        )
    logger.warning(
        "gave up waiting {:.0f}s for {} earlier repl(ies) of {}; sending", waited, len(ahead), dialog
    )
    metrics.REPLY_ORDER_GIVEN_UP.inc()
    reply_order.leave(cache, dialog, *ahead)


def _wait_for_kafka_record(
    settings: Settings, cache: Any, key: str, started_at: float, found: OperatorReplyResult | None
) -> None:
    """A Kafka record reaches the history only once RosDomofon consumed it: give an interrupted
    produce ``KAFKA_SETTLE`` seconds from its attempt to show up before deciding it never went out."""
    if found is not None or settings.reply_transport != ReplyTransport.KAFKA:
        return
    if reply_sends.recall_seen(cache, key) is None:
        return  # unknowable anyway: waiting would not tell
    left = KAFKA_SETTLE - (time.time() - started_at)
    if left > 0:
        raise ReplyNotYetError(f"waiting {left:.1f}s for an interrupted Kafka reply to reach the history",
                               retry_after=max(1.0, left))  # fmt: skip


def reply_text(payload: OperatorReplyPayload) -> str:
    """What the subscriber reads: the operator's words without BB codes, then one line per file."""
    words = strip_bbcodes(payload.text)
    files = files_text(payload.files)
    return "\n".join(part for part in (words, files) if part)


def _send_parts(
    settings: Settings, cache: Any, key: str, fingerprint: str, abonent_id: int, parts: list[str]
) -> OperatorReplyResult:
    """Send the reply, or each of its parts once and in order; an interrupted send is looked for first.

    Before the reply's first attempt the outgoing history ids are noted (``reply_sends``), so a send
    found only "started" is looked for by a new id. Part ``i`` of a split reply has its own marker
    ``send-part:<i>``, so a redelivered task resumes at
    the first part not recorded as sent instead of sending the reply's beginning again. A reply that
    fits is sent under the reply's own ``send`` marker, as it always was.
    """
    ttl = settings.effect_marker_ttl
    record = subscribers.recall(cache, abonent_id)
    first = SEND_STEP if len(parts) == 1 else f"{PART_STEP}:1"
    if effects.recall(cache, key, first, fingerprint) is None:  # the reply's first attempt
        reply_sends.remember_seen(cache, key, reply_history.outgoing_ids(abonent_id), ttl=ttl)
    sent: list[OperatorReplyResult] = []
    for number, part in enumerate(parts, 1):
        step = SEND_STEP if len(parts) == 1 else f"{PART_STEP}:{number}"
        marker = effects.recall(cache, key, step, fingerprint)
        if step != SEND_STEP and marker is not None and marker.done and marker.result is not None:
            sent.append(OperatorReplyResult.model_validate(marker.result))
            continue
        found = None
        if marker is not None:  # an earlier attempt began this send: did it go out?
            found = _recognised(settings, abonent_id, record, part, key)
            _wait_for_kafka_record(settings, cache, key, marker.at, found)
        effects.mark_started(cache, key, step, ttl=ttl, fingerprint=fingerprint)
        one = found or _send(settings, abonent_id, record, part)
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
                _wait_for_earlier(settings, cache, payload, key)
                result = _send_parts(settings, cache, key, fingerprint, abonent_id, parts)
                effects.mark_done(
                    cache, key, SEND_STEP, result.model_dump(mode="json"), ttl=ttl, fingerprint=fingerprint
                )
                logger.info(
                    "operator reply sent to abonent {} via {} in {} part(s)",
                    abonent_id, result.transport.value, len(parts),
                )  # fmt: skip
        reply_order.leave(cache, payload.chat_id, key)  # sent: the dialog's next reply may go
        status = effects.recall(cache, key, STATUS_STEP, fingerprint)
        if status is None or not status.done:
            _report_delivery(payload)
            effects.mark_done(cache, key, STATUS_STEP, {"reported": True}, ttl=ttl, fingerprint=fingerprint)
            logger.info("delivery reported to open line {}", payload.line)
        inflight.settle(cache, key)
        reply_sends.forget_seen(cache, key)
        return result.model_copy(update={"delivery_reported": True})


def reply_task_id(im_chat_id: int, im_message_id: int) -> str:
    """Deterministic id of the reply task: the same operator message always maps to the same task."""
    return f"reply:{im_chat_id}:{im_message_id}"


def enqueue_operator_reply(payload: OperatorReplyPayload, task_id: str) -> Any:
    """Default enqueue: publish ``flows.deliver_operator_reply``; returns once the broker accepted it.

    The reply enters the in-flight ledger (``tasks/state/inflight.py``) and its dialog's order queue
    (``tasks/state/reply_order.py``) first, keyed by the task id, which also rides in the message header
    the task layer reads as the message id, so a dead letter of the reply strikes it out.
    """
    cache = redis_client()
    inflight.track(cache, task_id, inflight.REPLY, payload)
    # Joined before publishing, so a later reply of the dialog published after this one waits for it.
    reply_order.join(
        cache, payload.chat_id, task_id, payload.im_message_id, ttl=get_settings().effect_marker_ttl
    )
    # Every caller tries again itself (the receiver's drain loop, the resend sweep, the offline poll):
    # fail fast like start_chain rather than hold a spool row for a minute of kombu retries.
    return deliver_operator_reply.apply_async(
        kwargs=payload.model_dump(mode="json"),
        task_id=task_id,
        headers={MESSAGE_HEADER: task_id},
        retry_policy=QUICK_PUBLISH_RETRY_POLICY,
    )


__all__ = [
    "deliver_operator_reply",
    "enqueue_operator_reply",
    "order_wait",
    "reply_fingerprint",
    "reply_key",
    "reply_task_id",
    "reply_text",
]
