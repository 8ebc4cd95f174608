"""``bitrix24.flush_posts``: many subscribers' messages posted in one Bitrix24 request.

At the portal's 2 requests/s a message per request caps the product at 2 messages/s. Open Lines'
``imconnector.send.messages`` takes many messages, each with its own ``user`` and ``chat``, and
answers per element at the element's index (bitrix24-api.md §11); in CRM-chat mode ``batch`` carries
up to 50 ``im.message.add`` (§5). So the post step queues its message in the outbox
(:mod:`tasks.state.outbox`) and this task posts what waits there.

Guarantees, inside and across batches:

* **one flusher at a time** (the ``outbox-flush`` lease), and a batch holds **the oldest waiting
  message of each subscriber** only: a subscriber's next message is not sent before the previous
  one's result is stored, so one subscriber's messages reach the portal one by one, in order;
* **a marker per message**: ``started`` before the request, ``done`` with the result right after the
  element's answer, then the message leaves the outbox. A request that certainly did not run (rate
  limited, connection refused) clears its ``started`` markers;
* **per-element results**: an element the portal refused is retried on its own in a later batch (with
  backoff, its neighbours are not sent again) and dead-lettered after ``ELEMENT_ATTEMPTS``;
* **ambiguous answers** (a timeout after the portal may have committed): the elements keep their
  ``started`` markers, and each is then posted alone through :func:`tasks.flows.chat.post_one` with
  ``ambiguous=True``, which looks for the earlier post (by CONNECTOR_MID or the hidden tag) first.

A whole-call refusal (``ERROR_ARGUMENT`` for one malformed element fails the call) sends each element
alone, so only the bad one is dead-lettered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis
from loguru import logger

from clients.bitrix24 import Bitrix24ConnectError
from clients.errors import FixInputError, LookUpFirstError, RateLimitedError, RetryLaterError
from schemas.dead_letters import DeadLetter, DeadLetterReason
from schemas.flows import (
    ChatModeUsed,
    FlushPostsPayload,
    FlushPostsResult,
    PostToChatPayload,
    PostToChatResult,
)
from tasks.flows import crm_chat, openlines, post_queue
from tasks.flows.chat import STEP, _crm_chat_text, chat_mode, finish_post, post_one
from tasks.flows.texts import chat_text
from tasks.runtime.operation import operation
from tasks.runtime.queues import Queue
from tasks.runtime.resources import bitrix24_client, redis_client
from tasks.settings import Settings, get_settings
from tasks.state import effects, inflight, outbox
from tasks.state.dead_letters import DeadLetterStore

FLUSH_LOCK = "outbox-flush"
FLUSH_LOCK_WAIT = 5.0  # only the race between is_locked and taking it is waited out
FLUSH_BUDGET = 30.0  # seconds one task flushes before handing over to the next (fair to other tasks)
ELEMENT_ATTEMPTS = 5  # an element the portal refuses this often is dead-lettered
CRM_BATCH = 50  # im.message.add commands per batch request


@dataclass
class Waiting:
    item: outbox.OutboxItem
    payload: PostToChatPayload


@dataclass
class Outcomes:
    """Per element: the posted result, or the refusal; an element in neither is ambiguous."""

    posted: dict[str, PostToChatResult] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


@dataclass
class Tally:
    posted: int = 0
    failed: int = 0
    requests: int = 0
    backoff: float | None = None  # seconds until something in the outbox may be tried again


def _dead_letter(cache: redis.Redis, settings: Settings, item: outbox.OutboxItem, error: str) -> None:
    DeadLetterStore(cache, max_items=settings.dead_letter_max).add(
        DeadLetter(
            name="flows.post_to_chat",
            payload=item.payload,
            reason=DeadLetterReason.NOT_RETRYABLE,
            error=f"OpenLinesRejectedError: {error}"[:2000],
            attempts=item.failures,
            source={"message_id": item.message_id, "batched": True},
        )
    )
    inflight.settle(cache, item.message_id)
    outbox.remove(cache, item)


def _refused(cache: redis.Redis, settings: Settings, entry: Waiting, error: str, tally: Tally) -> None:
    """The portal refused this element (it did not post): try it again alone later, or give up."""
    effects.clear_started(cache, entry.item.message_id, STEP)
    entry.item.failures += 1
    tally.failed += 1
    if entry.item.failures >= ELEMENT_ATTEMPTS:
        _dead_letter(cache, settings, entry.item, error)
        return
    entry.item.not_before = time.time() + min(30.0, 0.5 * 2 ** (entry.item.failures - 1))
    outbox.update(cache, entry.item)
    logger.warning("batched post of {} refused ({}); retried alone later", entry.item.message_id, error)


def _send_openlines(entries: list[Waiting], settings: Settings) -> Outcomes:
    portal, cache = bitrix24_client(), redis_client()
    connector = settings.openlines_connector_id
    line = openlines.resolve_line(portal, cache, settings.openlines_line_id)
    openlines.ensure_connector(portal, cache, connector, line, settings.webhook_public_url)
    items = [
        openlines.connector_message(
            e.payload.message, e.payload.account, chat_text(e.payload.message, e.payload.account)
        )
        for e in entries
    ]
    try:
        answer = portal.send_connector_messages(connector, line, items)
    except FixInputError as exc:
        if not openlines.setup_lost(exc):
            raise
        logger.warning("open lines: portal lost the connector ({}); setting it up again", exc.code)
        openlines.forget_setup(cache, connector, line)
        openlines.ensure_connector(portal, cache, connector, line, settings.webhook_public_url)
        answer = portal.send_connector_messages(connector, line, items)
    outcomes = Outcomes()
    results = answer.DATA.RESULT
    for index, (entry, item) in enumerate(zip(entries, items, strict=True)):
        element = results[index] if index < len(results) else None
        if element is None:
            continue  # no answer for it: it may or may not be in; looked for before any re-post
        if answer.SUCCESS and element.SUCCESS:
            chat_id = element.session.CHAT_ID if element.session is not None else None
            outcomes.posted[entry.item.message_id] = PostToChatResult(
                message_id=entry.item.message_id,
                contact_id=entry.payload.contact_id,
                mode=ChatModeUsed.OPENLINES,
                chat_id=chat_id,
                dialog_id=item.chat.id,
                posted_message_id=entry.item.message_id,
            )
        else:
            outcomes.refused[entry.item.message_id] = repr(element.ERRORS)[:500]
    return outcomes


def _send_crm_chat(entries: list[Waiting]) -> Outcomes:
    portal, cache = bitrix24_client(), redis_client()
    chats = {
        e.item.message_id: crm_chat.ensure_chat(
            portal, cache, e.payload.contact_id, f"РосДомофон: абонент +{e.payload.message.phone}"
        )
        for e in entries
    }
    commands = {
        f"m{index}": (
            "im.message.add",
            {"DIALOG_ID": f"chat{chats[e.item.message_id]}", "MESSAGE": _crm_chat_text(e.payload)},
        )
        for index, e in enumerate(entries)
    }
    answer = portal.batch(commands)
    outcomes = Outcomes()
    for index, entry in enumerate(entries):
        command = f"m{index}"
        message_id = entry.item.message_id
        if command in answer.results:
            outcomes.posted[message_id] = PostToChatResult(
                message_id=message_id,
                contact_id=entry.payload.contact_id,
                mode=ChatModeUsed.CRM_CHAT,
                chat_id=chats[message_id],
                dialog_id=f"chat{chats[message_id]}",
                posted_message_id=int(answer.results[command]),
            )
        elif command in answer.errors:
            body = answer.errors[command]
            outcomes.refused[message_id] = f"{body.error}: {body.error_description}"[:500]
    return outcomes


def _send(entries: list[Waiting], settings: Settings) -> Outcomes:
    if chat_mode(settings) == ChatModeUsed.OPENLINES:
        return _send_openlines(entries, settings)
    return _send_crm_chat(entries)


def _post_alone(cache: redis.Redis, settings: Settings, entry: Waiting, tally: Tally) -> None:
    """One element on its own: after an ambiguous batch (look first), or out of a refused call."""
    marker = effects.mark_started(cache, entry.item.message_id, STEP, ttl=settings.effect_marker_ttl)
    try:
        result = post_one(entry.payload, settings, ambiguous=marker is not None)
    except FixInputError as exc:
        _refused(cache, settings, entry, str(exc), tally)
        return
    finally:
        tally.requests += 1
    finish_post(entry.payload, result, settings)
    outbox.remove(cache, entry.item)
    tally.posted += 1


def _post_together(cache: redis.Redis, settings: Settings, fresh: list[Waiting], tally: Tally) -> None:
    """One request for ``fresh`` (CRM mode: one per 50); store each element's own outcome."""
    size = CRM_BATCH if chat_mode(settings) == ChatModeUsed.CRM_CHAT else len(fresh)
    for start in range(0, len(fresh), size):
        chunk = fresh[start : start + size]
        for entry in chunk:
            effects.mark_started(cache, entry.item.message_id, STEP, ttl=settings.effect_marker_ttl)
        try:
            outcomes = _send(chunk, settings)
        except (RateLimitedError, Bitrix24ConnectError):
            for entry in chunk:  # refused before it ran: nothing can be in the chat
                effects.clear_started(cache, entry.item.message_id, STEP)
            raise
        except FixInputError as exc:
            logger.warning("batched post of {} refused as a whole ({}); posting each alone", len(chunk), exc)
            for entry in chunk:
                effects.clear_started(cache, entry.item.message_id, STEP)
                _post_alone(cache, settings, entry, tally)
            continue
        finally:
            tally.requests += 1
        for entry in chunk:
            message_id = entry.item.message_id
            if message_id in outcomes.posted:
                finish_post(entry.payload, outcomes.posted[message_id], settings)
                outbox.remove(cache, entry.item)
                tally.posted += 1
            elif message_id in outcomes.refused:
                _refused(cache, settings, entry, outcomes.refused[message_id], tally)


GATHER_MAX = 1.0  # seconds a batch may wait for company when the portal's bucket is full


def gather_wait(portal_pressure: tuple[float, float], requests: int = 1) -> float:
    """How long to keep gathering before taking a batch that will cost ``requests`` requests.

    While the bucket is empty, nothing: latency first. The fuller it gets, the longer each batch
    gathers (up to ``GATHER_MAX`` per request it will make), so batches grow until the requests
    they cost fit the portal's rate instead of queueing one small batch after another behind the
    bucket; and never less than the wait for the slot itself, which is time spent gathering.
    """
    wait, used = portal_pressure
    return min(5.0, max(wait, min(1.0, used) * GATHER_MAX * requests))


def _gather_while_limited() -> None:
    delay = gather_wait(bitrix24_client().rate_pressure())
    if delay > 0:
        time.sleep(delay)


def flush_round(cache: redis.Redis, settings: Settings, tally: Tally) -> bool:
    """Post the head message of up to ``POST_BATCH_SIZE`` subscribers; False when nothing was due."""
    if not outbox.subscribers_waiting(cache):
        return False
    _gather_while_limited()
    now = time.time()
    fresh: list[Waiting] = []
    uncertain: list[Waiting] = []
    for item in outbox.heads(cache, settings.post_batch_size):
        entry = Waiting(item, PostToChatPayload.model_validate(item.payload))
        marker = effects.recall(cache, item.message_id, STEP)
        if marker is not None and marker.done and marker.result is not None:
            inflight.settle(cache, item.message_id)
            outbox.remove(cache, item)  # posted by a run that died before removing it
        elif item.not_before > now:
            wait = item.not_before - now
            tally.backoff = wait if tally.backoff is None else min(tally.backoff, wait)
        elif marker is not None:
            uncertain.append(entry)
        else:
            fresh.append(entry)
    for entry in uncertain:
        _post_alone(cache, settings, entry, tally)
    if fresh:
        _post_together(cache, settings, fresh, tally)
    return bool(fresh or uncertain)


def _flush(cache: redis.Redis, settings: Settings, tally: Tally) -> float | None:
    """Rounds until the outbox has nothing due; returns when to flush again (None: not needed)."""
    deadline = time.monotonic() + FLUSH_BUDGET
    while time.monotonic() < deadline:
        cache.delete(post_queue.KICK_KEY)  # from here on a new message schedules its own flush
        tally.backoff = None
        try:
            if not flush_round(cache, settings, tally):
                return tally.backoff
        except (RetryLaterError, LookUpFirstError) as exc:
            # Rate limited, unreachable, or an ambiguous answer: the outbox keeps every message
            # (ambiguous ones with their started markers); try again shortly.
            logger.warning("batched post failed ({}); flushing again shortly", exc)
            return max(exc.retry_after or 0.0, 1.0)
    return 0.0  # budget spent with messages left: the next task goes on at once


@operation("bitrix24.flush_posts", queue=Queue.BITRIX24, payload=FlushPostsPayload, result=FlushPostsResult)
def flush_posts(payload: FlushPostsPayload) -> FlushPostsResult:
    """Post what waits in the outbox, a batch per request, until it is empty (or the budget is spent)."""
    settings, cache = get_settings(), redis_client()
    tally = Tally()
    if effects.is_locked(cache, FLUSH_LOCK):
        # Another flush is running and may be past its last look at the outbox: come back after a
        # window rather than hold a worker process waiting for it.
        post_queue.kick_later(max(settings.post_batch_window, 0.5))
        return FlushPostsResult(waiting=outbox.waiting(cache))
    with effects.locked(cache, FLUSH_LOCK, wait=FLUSH_LOCK_WAIT):
        retry_in = _flush(cache, settings, tally)
    if retry_in is not None or outbox.subscribers_waiting(cache):
        post_queue.kick(cache, settings, countdown=retry_in if retry_in is not None else 0.0)
    return FlushPostsResult(
        posted=tally.posted, failed=tally.failed, requests=tally.requests, waiting=outbox.waiting(cache)
    )


__all__ = ["flush_posts", "flush_round", "gather_wait"]
