"""``flows.post_to_chat``: the chain's last step, the subscriber's message into a Bitrix24 chat.

The mode comes from ``CHAT_MODE``: Open Lines (``auto`` picks it when an OAuth app is configured)
or, for webhook-only portals, a CRM-linked chat per contact. Posting is the one side effect in the
chain that Bitrix24 cannot deduplicate for us, so it is bracketed by the effect marker
``done:{message_id}:post``: a ``done`` marker returns the stored result, and a ``started`` marker
without ``done`` (the worker died during the call) means the message may already be in the chat,
so we look for it before posting again: in Open Lines by our message id in the message's
``params.CONNECTOR_MID`` (:func:`_already_in_open_line`), in a CRM chat by the hidden tag
``rdb24:<message id>`` matched whole (:func:`_has_crm_tag`). Never by the text alone: a subscriber
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
posts only the parts still missing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from clients.errors import DoNotRetryError, FixInputError
from schemas.flows import ChatModeUsed, PostToChatPayload, PostToChatResult, SubscriberMessage
from tasks.flows import crm_chat, openlines
from tasks.flows.texts import chat_parts
from tasks.runtime import metrics
from tasks.runtime.operation import operation
from tasks.runtime.queues import Queue
from tasks.runtime.resources import bitrix24_client, redis_client
from tasks.settings import ChatMode, Settings, get_settings
from tasks.state import effects, inflight, subscribers

STEP = "post"
TAG_PREFIX = "rdb24:"  # hidden in the CRM chat message so a retry can recognise its own post
POST_LOCK_WAIT = 20.0
# Refusals that will not change on a retry (no access, unknown method): the check cannot be made, so
# we post again. Transient errors are not here: they propagate and the task retries.
UNREADABLE = (FixInputError, DoNotRetryError)


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


def message_parts(payload: PostToChatPayload) -> list[Part]:
    texts = chat_parts(payload.message, payload.account)
    message_id = payload.message.message_id
    if len(texts) == 1:
        return [Part(message_id, texts[0], STEP)]
    return [Part(f"{message_id}#{i}", text, f"{STEP}#{i}") for i, text in enumerate(texts, 1)]


def _post_openlines(
    payload: PostToChatPayload, settings: Settings, part: Part, ambiguous: bool
) -> PostToChatResult:
    portal, cache = bitrix24_client(), redis_client()
    connector = settings.openlines_connector_id
    line = openlines.resolve_line(portal, cache, settings.openlines_line_id)
    openlines.ensure_connector(portal, cache, connector, line, settings.webhook_public_url)
    item = openlines.connector_message(payload.message, payload.account, part.text, message_id=part.post_id)
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
        try:
            chat_id = openlines.send_to_line(portal, connector, line, item)
        except FixInputError as exc:
            if not openlines.setup_lost(exc):
                raise
            logger.warning("open lines: portal lost the connector ({}); setting it up again", exc.code)
            openlines.forget_setup(cache, connector, line)
            openlines.ensure_connector(portal, cache, connector, line, settings.webhook_public_url)
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


def _crm_chat_text(part: Part) -> str:
    # The trailing tag lets a redelivered step find its own post (im.dialog.messages.get).
    return f"{part.text}[br][i][size=8]{TAG_PREFIX}{part.post_id}[/size][/i]"


def _has_crm_tag(text: str, message_id: str) -> bool:
    """Our tag for exactly ``message_id``: ``rdb24:T:0:1`` must not match the tag ``rdb24:T:0:10``
    (nor ``rdb24:<id>`` the tag of its part ``rdb24:<id>#1``).

    The id must end where the tag's closing BB code (or its HTML rendering, or the text) begins.
    """
    return re.search(re.escape(f"{TAG_PREFIX}{message_id}") + r"(?=[\[<\s]|$)", text) is not None


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


def _post_crm_chat(payload: PostToChatPayload, part: Part, ambiguous: bool) -> PostToChatResult:
    portal, cache = bitrix24_client(), redis_client()
    title = f"РосДомофон: абонент +{payload.message.phone}"
    chat_id = crm_chat.ensure_chat(portal, cache, payload.contact_id, title)
    posted = _already_posted(portal, chat_id, lambda t: _has_crm_tag(t, part.post_id)) if ambiguous else None
    if posted is not None:
        logger.info(
            "message {} already in chat {} (id {}) from an interrupted run", part.post_id, chat_id, posted
        )
    else:
        posted = portal.post_chat_message(chat_id, _crm_chat_text(part))
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
    payload: PostToChatPayload, settings: Settings, mode: ChatModeUsed, part: Part, ambiguous: bool
) -> PostToChatResult:
    if mode == ChatModeUsed.OPENLINES:
        return _post_openlines(payload, settings, part, ambiguous)
    return _post_crm_chat(payload, part, ambiguous)


def _post_parts(
    payload: PostToChatPayload,
    settings: Settings,
    mode: ChatModeUsed,
    parts: list[Part],
    record: subscribers.SubscriberRecord,
    *,
    late: bool,
) -> list[PostToChatResult]:
    """Post parts 1..n in order, each under its own marker, so a rerun posts only what is missing."""
    cache, message = redis_client(), payload.message
    fingerprint, ttl = message.content_fingerprint(), settings.effect_marker_ttl
    results = []
    for part in parts:
        marker = effects.mark_started(cache, message.message_id, part.step, ttl=ttl, fingerprint=fingerprint)
        if marker is not None and marker.done and marker.result is not None:
            results.append(PostToChatResult.model_validate(marker.result))
            continue
        result = _post_part(payload, settings, mode, part, ambiguous=marker is not None or late)
        effects.mark_done(
            cache,
            message.message_id,
            part.step,
            result.model_dump(mode="json"),
            ttl=ttl,
            fingerprint=fingerprint,
        )
        _remember_chat(record, result)
        subscribers.remember(cache, record)  # the next part (and an operator's answer) finds the dialog
        results.append(result)
    return results


def _remember_chat(record: subscribers.SubscriberRecord, result: PostToChatResult) -> None:
    if result.mode == ChatModeUsed.OPENLINES:
        record.openlines_chat_id = result.chat_id
    else:
        record.crm_chat_id = result.chat_id


@operation("flows.post_to_chat", queue=Queue.FLOWS, payload=PostToChatPayload, result=PostToChatResult)
def post_to_chat(payload: PostToChatPayload) -> PostToChatResult:
    """Post the subscriber's message to the contact's chat, exactly once per message id."""
    settings, cache = get_settings(), redis_client()
    message_id, fingerprint = payload.message.message_id, payload.message.content_fingerprint()
    ttl = settings.effect_marker_ttl
    with logger.contextualize(message_id=message_id, kafka_position=payload.message.kafka_position):
        # Two copies of this step (a Kafka message enqueued twice) must not post side by side: the
        # second waits, then returns the first one's stored result.
        with effects.locked(cache, f"post:{message_id}", wait=POST_LOCK_WAIT):
            previous = effects.mark_started(cache, message_id, STEP, ttl=ttl, fingerprint=fingerprint)
            if previous is not None and previous.done and previous.result is not None:
                inflight.settle(cache, message_id)
                return PostToChatResult.model_validate(previous.result)
            late = previous is None and older_than_markers(payload.message, settings)
            if late:
                logger.warning("message older than EFFECT_MARKER_TTL: checking the chat before posting")
            mode = chat_mode(settings)
            # Remember the subscriber before posting: an operator may answer before this step returns.
            record = _subscriber_record(payload)
            subscribers.remember(cache, record)
            parts = message_parts(payload)
            if len(parts) == 1:
                result = _post_part(payload, settings, mode, parts[0], ambiguous=previous is not None or late)
            else:
                posted = _post_parts(payload, settings, mode, parts, record, late=late)
                result = posted[-1].model_copy(update={"parts": [r.posted_message_id for r in posted]})
                metrics.TEXTS_SPLIT.inc(mode=mode.value)
            _remember_chat(record, result)
            effects.mark_done(
                cache, message_id, STEP, result.model_dump(mode="json"), ttl=ttl, fingerprint=fingerprint
            )
            inflight.settle(cache, message_id)
            subscribers.remember(cache, record)
        metrics.CHAT_POSTS.inc(mode=mode.value)
        logger.info("message posted to {} chat {} in {} part(s)", mode.value, result.dialog_id, len(parts))
        return result


__all__ = ["Part", "chat_mode", "message_parts", "older_than_markers", "post_to_chat"]
