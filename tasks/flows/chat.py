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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from loguru import logger

from clients.errors import DoNotRetryError, FixInputError
from schemas.flows import ChatModeUsed, PostToChatPayload, PostToChatResult
from tasks.flows import crm_chat, openlines, post_queue
from tasks.flows.texts import chat_text
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


def _post_openlines(payload: PostToChatPayload, settings: Settings, ambiguous: bool) -> PostToChatResult:
    portal, cache = bitrix24_client(), redis_client()
    connector = settings.openlines_connector_id
    line = openlines.resolve_line(portal, cache, settings.openlines_line_id)
    openlines.ensure_connector(portal, cache, connector, line, settings.webhook_public_url)
    text = chat_text(payload.message, payload.account)
    item = openlines.connector_message(payload.message, payload.account, text)
    known = subscribers.recall(cache, payload.message.abonent_id)
    chat_id = known.openlines_chat_id if known else None
    # After an interrupted send, the dialog shows whether it went in, recognised by our message id
    # (never by text: a subscriber may well write "да" twice).
    posted = None
    if ambiguous and chat_id:
        posted = _already_in_open_line(portal, chat_id, payload.message.message_id)
    elif ambiguous:
        chat_id, posted = _interrupted_first_post(
            portal, connector, payload.contact_id, payload.message.message_id
        )
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
        logger.info("message already in open line chat {} from an interrupted run", chat_id)
    return PostToChatResult(
        message_id=payload.message.message_id,
        contact_id=payload.contact_id,
        mode=ChatModeUsed.OPENLINES,
        chat_id=chat_id,
        dialog_id=item.chat.id,
        posted_message_id=payload.message.message_id,
    )


def _crm_chat_text(payload: PostToChatPayload) -> str:
    # The trailing tag lets a redelivered step find its own post (im.dialog.messages.get).
    tag = f"{TAG_PREFIX}{payload.message.message_id}"
    return f"{chat_text(payload.message, payload.account)}[br][i][size=8]{tag}[/size][/i]"


def _has_crm_tag(text: str, message_id: str) -> bool:
    """Our tag for exactly ``message_id``: ``rdb24:T:0:1`` must not match the tag ``rdb24:T:0:10``.

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


def _post_crm_chat(payload: PostToChatPayload, ambiguous: bool) -> PostToChatResult:
    portal, cache = bitrix24_client(), redis_client()
    title = f"РосДомофон: абонент +{payload.message.phone}"
    chat_id = crm_chat.ensure_chat(portal, cache, payload.contact_id, title)
    message_id = payload.message.message_id
    posted = _already_posted(portal, chat_id, lambda t: _has_crm_tag(t, message_id)) if ambiguous else None
    if posted is not None:
        logger.info("message already in chat {} (id {}) from an interrupted run", chat_id, posted)
    else:
        posted = portal.post_chat_message(chat_id, _crm_chat_text(payload))
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


def post_one(payload: PostToChatPayload, settings: Settings, *, ambiguous: bool) -> PostToChatResult:
    """Post one message in its own request; ``ambiguous``: an earlier run may have posted it already."""
    if chat_mode(settings) == ChatModeUsed.OPENLINES:
        return _post_openlines(payload, settings, ambiguous=ambiguous)
    return _post_crm_chat(payload, ambiguous=ambiguous)


def finish_post(payload: PostToChatPayload, result: PostToChatResult, settings: Settings) -> None:
    """Store the post's result (``done``), settle the ledger and remember the subscriber's chat."""
    cache = redis_client()
    record = _subscriber_record(payload)
    if result.mode == ChatModeUsed.OPENLINES:
        record.openlines_chat_id = result.chat_id
    else:
        record.crm_chat_id = result.chat_id
    effects.mark_done(
        cache, result.message_id, STEP, result.model_dump(mode="json"), ttl=settings.effect_marker_ttl
    )
    inflight.settle(cache, result.message_id)
    subscribers.remember(cache, record)
    metrics.CHAT_POSTS.inc(mode=result.mode.value)


def _queued_result(payload: PostToChatPayload, mode: ChatModeUsed) -> PostToChatResult:
    """What the chain step returns for a message handed to the outbox: no chat id yet."""
    dialog = subscribers.dialog_id(payload.message.abonent_id) if mode == ChatModeUsed.OPENLINES else None
    return PostToChatResult(
        message_id=payload.message.message_id, contact_id=payload.contact_id, mode=mode, dialog_id=dialog
    )


@operation("flows.post_to_chat", queue=Queue.FLOWS, payload=PostToChatPayload, result=PostToChatResult)
def post_to_chat(payload: PostToChatPayload) -> PostToChatResult:
    """Post the subscriber's message to the contact's chat, exactly once per message id.

    With ``POST_BATCH_WINDOW`` > 0 the message goes to the outbox and ``bitrix24.flush_posts`` posts it
    together with other subscribers' messages (:mod:`tasks.flows.post_batch`); the step then returns
    without a chat id, and the posted result is kept in the ``done`` marker.
    """
    settings, cache = get_settings(), redis_client()
    message_id = payload.message.message_id
    with logger.contextualize(message_id=message_id):
        # Two copies of this step (a Kafka message enqueued twice) must not post side by side: the
        # second waits, then returns the first one's stored result.
        with effects.locked(cache, f"post:{message_id}", wait=POST_LOCK_WAIT):
            previous = effects.recall(cache, message_id, STEP)
            if previous is not None and previous.done and previous.result is not None:
                inflight.settle(cache, message_id)
                return PostToChatResult.model_validate(previous.result)
            mode = chat_mode(settings)
            # Remember the subscriber before posting: an operator may answer before this step returns.
            subscribers.remember(cache, _subscriber_record(payload))
            if settings.post_batch_window > 0:
                post_queue.queue_post(cache, payload, settings)
                logger.info("message queued for a batched post")
                return _queued_result(payload, mode)
            previous = effects.mark_started(cache, message_id, STEP, ttl=settings.effect_marker_ttl)
            result = post_one(payload, settings, ambiguous=previous is not None)
            finish_post(payload, result, settings)
        logger.info("message posted to {} chat {}", mode.value, result.dialog_id)
        return result


__all__ = ["chat_mode", "finish_post", "post_one", "post_to_chat"]
