"""``flows.post_to_chat``: the chain's last step, the subscriber's message into a Bitrix24 chat.

The mode comes from ``CHAT_MODE``: Open Lines (``auto`` picks it when an OAuth app is configured)
or, for webhook-only portals, a CRM-linked chat per contact. Posting is the one side effect in the
chain that Bitrix24 cannot deduplicate for us, so it is bracketed by the effect marker
``done:{message_id}:post``: a ``done`` marker returns the stored result, and a ``started`` marker
without ``done`` (the worker died during the call) means the message may already be in the chat,
so we look for it before posting again: in Open Lines by our message id in the message's
``params.CONNECTOR_MID`` (:func:`_already_in_open_line`), in a CRM chat by the hidden tag
``rdb24:<message id>`` matched whole, wrapper included, at the end of the post (:func:`_has_crm_tag`;
subscriber text cannot forge it, see :func:`tasks.flows.texts.inert`). Never by the text alone: a subscriber
may send the same words twice, and taking the first for the second would lose it silently.

The first message of a new Open Lines dialog is the hard case: its answer (the chat id) is what was
lost. The dialog is then found through the CRM tracker's link to the subscriber's contact
(``imopenlines.crm.chat.get``, :func:`_interrupted_first_post`). Only when the line's tracker linked
the dialog to something else (a lead, say) is the message sent again, and may then appear twice.
If the portal cannot be read right now, the task retries rather than guess.

The same check runs when no marker is found for a message older than ``EFFECT_MARKER_TTL`` (its
marker may have expired after a post: a late replay or redelivery, :func:`older_than_markers`).
A text longer than Bitrix24 keeps whole (20,000 characters) is posted in ordered parts, each with its
own id ``<message id>#i`` and marker ``post#i`` (:func:`message_parts`), so a rerun after a crash
posts only the parts still missing. The subscriber's picture goes with the first part only.

While the Bitrix24 app is uninstalled (``ONAPPUNINSTALL``, :mod:`tasks.state.app_install`) an Open
Lines post is held (:mod:`tasks.state.held`, the result says ``held``) rather than failed; the next
install publishes it again.

Order per subscriber: before posting, the step looks in the subscriber's order queue
(:mod:`tasks.state.order`) for messages written earlier (record timestamp) and not yet posted or
dead-lettered. While there is one, it parks itself with its payload and raises
:class:`PredecessorPendingError` (a wait, not a failure: retried after a countdown, outside every
retry budget); the post before it posts parked successors in turn as soon as it is done
(:func:`_post_parked_successors`). It waits at most ``ORDER_WAIT_MAX`` seconds from its first
wait; then it posts anyway, out of order, and the
messages it gave up on leave the queue (they hold up no later message any more). An earlier
message whose post marker says done (the worker died between the post and leaving the queue) is
taken out of the queue here instead of being waited for.

The post lock is a fenced lease (``tasks.state.effects``): the send runs only after
``lease.ensure_held()``, and both markers are written only while the lease holds. A worker stopped
past the lease therefore neither posts beside the successor that took over its message nor
overwrites the successor's marker; it retries and finds the successor's result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from clients.errors import DoNotRetryError, FixInputError, IntegrationError
from schemas.flows import ChatModeUsed, PostToChatPayload, PostToChatResult, SubscriberMessage
from tasks.errors import PredecessorPendingError
from tasks.flows import crm_chat, openlines
from tasks.flows.attachments import crm_attach, web_url
from tasks.flows.texts import OUR_TAG, chat_parts
from tasks.runtime import metrics
from tasks.runtime.operation import operation
from tasks.runtime.queues import Queue
from tasks.runtime.resources import bitrix24_client, redis_client
from tasks.settings import ChatMode, Settings, get_settings
from tasks.state import app_install, effects, held, inflight, order, subscribers

STEP = "post"
TAG_PREFIX = OUR_TAG  # hidden in the CRM chat message so a retry can recognise its own post
PICTURE_LINE = "Фото:"
POST_LOCK_WAIT = 20.0
# Refusals that will not change on a retry (no access, unknown method): the check cannot be made, so
# we post again. Transient errors are not here: they propagate and the task retries.
UNREADABLE = (FixInputError, DoNotRetryError)
# A waiting post is parked: the post before it posts it in turn (_post_parked_successors). It also
# looks again on its own after this many seconds per message ahead of it, within these bounds, for
# a predecessor that was dead-lettered or overtaken, or a hand-over missed in a race. Each look is
# one retry message, so the tenth in line looks rarely.
ORDER_POLL_PER_AHEAD = 0.5
ORDER_POLL_MIN = 0.5
ORDER_POLL_MAX = 5.0
DRAIN_MAX = 20  # parked successors one post posts in turn before handing over to the next one's task


def _order_poll(ahead: int, remaining: float) -> float:
    return max(0.05, min(max(ORDER_POLL_PER_AHEAD * ahead, ORDER_POLL_MIN), ORDER_POLL_MAX, remaining))


def _posted(cache: Any, message_id: str) -> bool:
    marker = effects.recall(cache, message_id, STEP)
    return marker is not None and marker.done


def wait_for_turn(cache: Any, payload: PostToChatPayload, settings: Settings) -> None:
    """Return when the message may be posted; raise :class:`PredecessorPendingError` to wait more.

    While it waits the post is parked with ``payload``, so the post before it can post it in turn.
    """
    message = payload.message
    if message.sent_at is None or settings.order_wait_max <= 0:
        return
    ahead = []
    for earlier in order.earlier(cache, message.abonent_id, message.message_id, message.sent_at):
        if _posted(cache, earlier):
            order.leave(cache, message.abonent_id, earlier)  # posted, but died before leaving
        else:
            ahead.append(earlier)
    if not ahead:
        order.unpark(cache, message.abonent_id, message.message_id)
        return
    ttl = settings.effect_marker_ttl
    since = order.park(
        cache, message.abonent_id, message.message_id, payload.model_dump(mode="json"), ttl=ttl
    )
    waited = time.time() - since
    remaining = settings.order_wait_max - waited
    if remaining <= 0:
        # Overtaken: they no longer hold up this subscriber's later messages either, or a stuck
        # one would delay every new message by the whole bound until the sweep resends it.
        for earlier in ahead:
            order.leave(cache, message.abonent_id, earlier)
        order.unpark(cache, message.abonent_id, message.message_id)
        metrics.ORDER_WAITS_EXPIRED.inc()
        logger.warning(
            "waited {:.0f}s for {} earlier message(s) of the subscriber ({}); posting out of order",
            waited, len(ahead), ", ".join(ahead[:3]),
        )  # fmt: skip
        return
    raise PredecessorPendingError(
        f"subscriber's earlier message {ahead[0]} not posted yet ({len(ahead)} ahead, waited {waited:.1f}s)",
        retry_after=_order_poll(len(ahead), remaining),
    )


def chat_mode(settings: Settings) -> ChatModeUsed:
    if settings.chat_mode == ChatMode.OPENLINES:
        return ChatModeUsed.OPENLINES
    if settings.chat_mode == ChatMode.CRM_CHAT:
        return ChatModeUsed.CRM_CHAT
    return ChatModeUsed.OPENLINES if settings.bitrix24_oauth_configured else ChatModeUsed.CRM_CHAT


@dataclass(frozen=True)
class Part:
    """One chat message of a subscriber message: the whole text, or part ``i`` of ``n`` (texts.chat_parts).

    ``post_id`` is what the portal keeps to recognise it (Open Lines ``message.id`` / CONNECTOR_MID,
    the CRM chat's hidden tag): the message id itself, or ``<message id>#i`` for parts. ``step`` is
    its effect marker.
    """

    post_id: str
    text: str
    step: str
    first: bool = True  # the part that carries the subscriber's picture


def message_parts(payload: PostToChatPayload) -> list[Part]:
    texts = chat_parts(payload.message, payload.account)
    message_id = payload.message.message_id
    if len(texts) == 1:
        return [Part(message_id, texts[0], STEP)]
    return [Part(f"{message_id}#{i}", text, f"{STEP}#{i}", i == 1) for i, text in enumerate(texts, 1)]


def _post_openlines(
    payload: PostToChatPayload, settings: Settings, part: Part, ambiguous: bool, lease: effects.Lease
) -> PostToChatResult:
    portal, cache = bitrix24_client(), redis_client()
    connector = settings.openlines_connector_id
    line = openlines.resolve_line(portal, cache, settings.openlines_line_id)
    openlines.ensure_connector(portal, cache, connector, line, settings.webhook_public_url, lease=lease)
    item = openlines.connector_message(
        payload.message, payload.account, part.text, message_id=part.post_id, with_picture=part.first
    )
    known = subscribers.recall(cache, payload.message.abonent_id)
    chat_id = known.openlines_chat_id if known else None
    # After an interrupted send, the dialog shows whether it went in, recognised by our message id
    # (never by text: a subscriber may well write "да" twice).
    posted = None
    if ambiguous and chat_id:
        posted = _already_in_open_line(portal, chat_id, part.post_id)
    elif ambiguous:
        chat_id, posted = _interrupted_first_post(portal, connector, payload.contact_id, part.post_id)
    if posted is None:
        lease.ensure_held()
        try:
            chat_id = openlines.send_to_line(portal, connector, line, item)
        except FixInputError as exc:
            if not openlines.setup_lost(exc):
                raise
            logger.warning("open lines: portal lost the connector ({}); setting it up again", exc.code)
            openlines.forget_setup(cache, connector, line)
            openlines.ensure_connector(portal, cache, connector, line, settings.webhook_public_url)
            lease.ensure_held()
            chat_id = openlines.send_to_line(portal, connector, line, item)
    else:
        logger.info("message {} already in open line chat {} from an interrupted run", part.post_id, chat_id)
    return PostToChatResult(
        message_id=payload.message.message_id,
        contact_id=payload.contact_id,
        mode=ChatModeUsed.OPENLINES,
        chat_id=chat_id,
        dialog_id=item.chat.id,
        posted_message_id=part.post_id,
    )


def _crm_tag(post_id: str) -> str:
    return f"[i][size=8]{TAG_PREFIX}{post_id}[/size][/i]"


def _crm_chat_text(part: Part, picture: str | None = None) -> str:
    # The trailing tag lets a redelivered step find its own post (im.dialog.messages.get).
    text = part.text
    if picture:
        text += f"[br]{PICTURE_LINE} {picture}"  # the ATTACH link too, for clients that hide attachments
    return f"{text}[br]{_crm_tag(part.post_id)}"


def _has_crm_tag(text: str, message_id: str) -> bool:
    """Our tag for exactly ``message_id``, ending the text: ``…:1`` must not match the tag of ``…:10``
    (nor ``rdb24:<id>`` the tag of its part ``rdb24:<id>#1``).

    The tag is matched whole with its BB wrapper and at the very end of the post, where only we put
    it: subscriber text is inert (every ``[`` is followed by a word joiner and ``rdb24:`` is broken up,
    :func:`tasks.flows.texts.inert`), so no words a subscriber types can contain ``[size=8]rdb24:…``,
    let alone end a post with it.
    """
    return text.rstrip().endswith(_crm_tag(message_id))


def _recent_messages(portal: Any, chat_id: int) -> list[dict[str, Any]] | None:
    """The chat's newest 50 messages, or None when the portal refuses to show them (then: post again).

    A transient failure (5xx, rate limit, timeout) propagates: the task retries and checks again
    instead of guessing.
    """
    try:
        result = portal.call("im.dialog.messages.get", {"DIALOG_ID": f"chat{chat_id}", "LIMIT": 50})
    except UNREADABLE as exc:
        logger.warning("cannot read chat {} to check for an earlier post ({}); posting again", chat_id, exc)
        return None
    rows = result.get("messages", []) if isinstance(result, dict) else []
    return [row for row in rows if isinstance(row, dict)]


def _already_posted(portal: Any, chat_id: int, matches: Callable[[str], bool]) -> int | None:
    """The id of a recent message in ``chat_id`` whose text ``matches``, if the portal shows one."""
    for row in _recent_messages(portal, chat_id) or []:
        if matches(str(row.get("text", ""))):
            return int(row["id"])
    return None


def _connector_mids(row: dict[str, Any]) -> list[str] | None:
    """The external ids the portal stored with a message received through our connector.

    Bitrix24 adds a message that came in through ``imconnector.send.messages`` with
    ``PARAMS['CONNECTOR_MID']`` = the array of the connector's external message ids, and
    ``im.dialog.messages.get`` returns it in ``params``. This comes from the Bitrix24 module source
    (imopenlines/imconnector), not from the facts doc, which does not list message params.
    None when the row carries no such params.
    """
    params = row.get("params")
    mids = params.get("CONNECTOR_MID") if isinstance(params, dict) else None
    if mids is None:
        return None
    return [str(mid) for mid in (mids if isinstance(mids, list) else [mids])]


def _already_in_open_line(portal: Any, chat_id: int, message_id: str) -> int | None:
    """The portal's id of our earlier post of ``message_id`` in the dialog, matched by CONNECTOR_MID.

    A text match is never proof: the subscriber's previous identical message ("да", "ok") would be
    taken for this one and this one silently lost. When the portal shows no CONNECTOR_MID at all we
    cannot tell, so we post again: a duplicate is recoverable, a lost message is not.
    """
    rows = _recent_messages(portal, chat_id)
    if rows is None:
        return None
    seen_mids = False
    for row in rows:
        mids = _connector_mids(row)
        if mids is None:
            continue
        seen_mids = True
        if str(message_id) in mids:
            return int(row["id"])
    if not seen_mids and rows:
        logger.warning(
            "open line chat {} shows no CONNECTOR_MID, so an interrupted post of {} cannot be "
            "recognised; posting again (a duplicate is possible, a loss is not)",
            chat_id,
            message_id,
        )
    return None


def _interrupted_first_post(
    portal: Any, connector: str, contact_id: int, message_id: str
) -> tuple[int | None, int | None]:
    """(chat id, portal message id) of an interrupted first post of a new dialog, if it went in.

    The chat id was in the lost answer; the portal's CRM tracker links a new dialog to the contact
    with the subscriber's phone (which the previous step made sure exists), so the contact's Open
    Lines chats of our connector are where it can be.
    """
    try:
        chats = portal.crm_open_line_chats("contact", contact_id)
    except UNREADABLE as exc:
        logger.warning(
            "cannot list contact {}'s open line chats ({}); posting {} again (a duplicate is possible)",
            contact_id, exc, message_id,
        )  # fmt: skip
        return None, None
    ours = [chat.CHAT_ID for chat in chats if connector == chat.CONNECTOR_ID]
    for chat_id in ours:
        posted = _already_in_open_line(portal, chat_id, message_id)
        if posted is not None:
            return chat_id, posted
    logger.warning(
        "interrupted first post of {} not found in contact {}'s {} open line chat(s) of connector {}; "
        "posting again (a duplicate is possible if the line linked the dialog to another CRM record)",
        message_id, contact_id, len(ours), connector,
    )  # fmt: skip
    return None, None


def _post_crm_chat(
    payload: PostToChatPayload, part: Part, ambiguous: bool, lease: effects.Lease
) -> PostToChatResult:
    portal, cache = bitrix24_client(), redis_client()
    title = f"РосДомофон: абонент +{payload.message.phone}"
    chat_id = crm_chat.ensure_chat(portal, cache, payload.contact_id, title, lease=lease)
    posted = _already_posted(portal, chat_id, lambda t: _has_crm_tag(t, part.post_id)) if ambiguous else None
    if posted is not None:
        logger.info(
            "message {} already in chat {} (id {}) from an interrupted run", part.post_id, chat_id, posted
        )
    else:
        picture = web_url(payload.message.image_url) if part.first else None
        attach = crm_attach(picture) if picture else None
        lease.ensure_held()
        posted = portal.post_chat_message(chat_id, _crm_chat_text(part, picture), attach)
    return PostToChatResult(
        message_id=payload.message.message_id,
        contact_id=payload.contact_id,
        mode=ChatModeUsed.CRM_CHAT,
        chat_id=chat_id,
        dialog_id=f"chat{chat_id}",
        posted_message_id=posted,
    )


def _subscriber_record(payload: PostToChatPayload) -> subscribers.SubscriberRecord:
    return subscribers.SubscriberRecord(
        abonent_id=payload.message.abonent_id,
        phone=payload.message.phone,
        company_id=payload.message.company_id,
        company_short_name=payload.account.company_short_name if payload.account else None,
        account_id=payload.account.account_id if payload.account else None,
        contact_id=payload.contact_id,
    )


def older_than_markers(message: SubscriberMessage, settings: Settings) -> bool:
    """Whether the message's effect markers may have expired (``EFFECT_MARKER_TTL`` after it was sent).

    Markers are written after the record's timestamp, so below that age a missing marker means the
    step never ran; above it, a post may have gone in and its marker expired since (a late replay, a
    Kafka group reset to an old offset). A tenth of the TTL (at most an hour) allows for clock skew.
    """
    if message.sent_at is None:
        return False
    ttl = settings.effect_marker_ttl
    return time.time() - message.sent_at >= ttl - min(3600.0, ttl / 10)


def _post_part(
    payload: PostToChatPayload,
    settings: Settings,
    mode: ChatModeUsed,
    part: Part,
    ambiguous: bool,
    lease: effects.Lease,
) -> PostToChatResult:
    if mode == ChatModeUsed.OPENLINES:
        return _post_openlines(payload, settings, part, ambiguous, lease)
    return _post_crm_chat(payload, part, ambiguous, lease)


def _post_parts(
    payload: PostToChatPayload,
    settings: Settings,
    mode: ChatModeUsed,
    parts: list[Part],
    record: subscribers.SubscriberRecord,
    *,
    late: bool,
    lease: effects.Lease,
) -> list[PostToChatResult]:
    """Post parts 1..n in order, each under its own marker, so a rerun posts only what is missing."""
    cache, message = redis_client(), payload.message
    fingerprint, ttl = message.content_fingerprint(), settings.effect_marker_ttl
    results = []
    for part in parts:
        marker = effects.mark_started(
            cache, message.message_id, part.step, ttl=ttl, fingerprint=fingerprint, lease=lease
        )
        if marker is not None and marker.done and marker.result is not None:
            results.append(PostToChatResult.model_validate(marker.result))
            continue
        result = _post_part(payload, settings, mode, part, ambiguous=marker is not None or late, lease=lease)
        effects.mark_done(
            cache,
            message.message_id,
            part.step,
            result.model_dump(mode="json"),
            ttl=ttl,
            fingerprint=fingerprint,
            lease=lease,
        )
        _remember_chat(record, result)
        subscribers.remember(cache, record)  # the next part (and an operator's answer) finds the dialog
        results.append(result)
    return results


def _held_while_uninstalled(cache: Any, payload: PostToChatPayload) -> bool:
    """Hold the post while the app is uninstalled (no token can post); True when it was held.

    Held first, then the state read again: an install that completed in between has already
    released what it saw, so this message goes on to be posted now rather than wait for another.
    """
    if not app_install.is_uninstalled(cache):
        return False
    message = payload.message
    done = effects.recall(cache, message.message_id, STEP, message.content_fingerprint())
    if done is not None and done.done:
        return False  # posted before the uninstall: the stored result is returned as usual
    held.hold(cache, message.message_id, payload.model_dump_json())
    if app_install.is_uninstalled(cache):
        logger.warning("bitrix24 app is uninstalled: message held until it is installed again")
        return True
    held.release(cache, message.message_id)
    return False


def _held(payload: PostToChatPayload, mode: ChatModeUsed) -> PostToChatResult:
    inflight.settle(redis_client(), payload.message.message_id)  # the held store has it now
    return PostToChatResult(
        message_id=payload.message.message_id, contact_id=payload.contact_id, mode=mode, held=True
    )


def _remember_chat(record: subscribers.SubscriberRecord, result: PostToChatResult) -> None:
    if result.mode == ChatModeUsed.OPENLINES:
        record.openlines_chat_id = result.chat_id
    else:
        record.crm_chat_id = result.chat_id


def _settle(cache: Any, payload: PostToChatPayload) -> None:
    """Posted: out of the in-flight ledger and out of the way of the subscriber's next message."""
    inflight.settle(cache, payload.message.message_id)
    order.leave(cache, payload.message.abonent_id, payload.message.message_id)


def _post_once(
    cache: Any, settings: Settings, payload: PostToChatPayload, *, lock_wait: float = POST_LOCK_WAIT
) -> PostToChatResult:
    """Post the message unless a run before did; the lock and the markers make it once per message id."""
    message_id, fingerprint = payload.message.message_id, payload.message.content_fingerprint()
    ttl = settings.effect_marker_ttl
    # Two copies of this step (a Kafka message enqueued twice) must not post side by side: the
    # second waits, then returns the first one's stored result.
    with effects.locked(cache, f"post:{message_id}", wait=lock_wait) as lease:
        mode = chat_mode(settings)
        if mode == ChatModeUsed.OPENLINES and _held_while_uninstalled(cache, payload):
            return _held(payload, mode)
        previous = effects.mark_started(
            cache, message_id, STEP, ttl=ttl, fingerprint=fingerprint, lease=lease
        )
        if previous is not None and previous.done and previous.result is not None:
            _settle(cache, payload)
            return PostToChatResult.model_validate(previous.result)
        late = previous is None and older_than_markers(payload.message, settings)
        if late:
            logger.warning("message older than EFFECT_MARKER_TTL: checking the chat before posting")
        # Remember the subscriber before posting: an operator may answer before this step returns.
        record = _subscriber_record(payload)
        subscribers.remember(cache, record)
        parts = message_parts(payload)
        try:
            if len(parts) == 1:
                ambiguous = previous is not None or late
                result = _post_part(payload, settings, mode, parts[0], ambiguous, lease)
            else:
                posted = _post_parts(payload, settings, mode, parts, record, late=late, lease=lease)
                result = posted[-1].model_copy(update={"parts": [r.posted_message_id for r in posted]})
                metrics.TEXTS_SPLIT.inc(mode=mode.value)
        except IntegrationError:
            # Uninstalled while posting (tokens revoked): hold it rather than fail it.
            if mode != ChatModeUsed.OPENLINES or not _held_while_uninstalled(cache, payload):
                raise
            return _held(payload, mode)
        _remember_chat(record, result)
        effects.mark_done(
            cache,
            message_id,
            STEP,
            result.model_dump(mode="json"),
            ttl=ttl,
            fingerprint=fingerprint,
            lease=lease,
        )
        _settle(cache, payload)
        subscribers.remember(cache, record)
    metrics.CHAT_POSTS.inc(mode=mode.value)
    logger.info("message posted to {} chat {} in {} part(s)", mode.value, result.dialog_id, len(parts))
    return result


def _post_parked_successors(cache: Any, settings: Settings, abonent_id: int) -> None:
    """Post, in order, the subscriber's next messages that are parked waiting for this one.

    Done here, at once, rather than left to their next look: each look waits for a free worker
    behind the backlog, so a burst of one subscriber's messages would otherwise go at one message
    per look. At most ``DRAIN_MAX``. Never blocks and never fails the post already made: a message
    whose post lock is taken (its own run is posting it) or whose post fails ends the hand-over,
    and that message's own parked retry carries on (the lock and marker keep every post single).
    """
    for _ in range(DRAIN_MAX):
        parked = order.next_parked(cache, abonent_id)
        if parked is None:
            return
        message_id, raw = parked
        with logger.contextualize(message_id=message_id):
            try:
                successor = PostToChatPayload.model_validate(raw)
                order.unpark(cache, abonent_id, message_id)
                _post_once(cache, settings, successor, lock_wait=0.0)
            except Exception as exc:
                logger.info("next message not posted in turn here ({}); its own retry goes on", exc)
                return


@operation("flows.post_to_chat", queue=Queue.FLOWS, payload=PostToChatPayload, result=PostToChatResult)
def post_to_chat(payload: PostToChatPayload) -> PostToChatResult:
    """Post the subscriber's message to the contact's chat, exactly once per message id, in order."""
    settings, cache = get_settings(), redis_client()
    message = payload.message
    with logger.contextualize(message_id=message.message_id, kafka_position=message.kafka_position):
        done = effects.recall(cache, message.message_id, STEP, message.content_fingerprint())
        if done is not None and done.done and done.result is not None:
            _settle(cache, payload)
            result = PostToChatResult.model_validate(done.result)
        else:
            wait_for_turn(cache, payload, settings)
            result = _post_once(cache, settings, payload)
    _post_parked_successors(cache, settings, message.abonent_id)  # also after a crash before the hand-over
    return result


__all__ = ["Part", "chat_mode", "message_parts", "older_than_markers", "post_to_chat", "wait_for_turn"]
