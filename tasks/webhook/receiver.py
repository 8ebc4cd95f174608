"""The Bitrix24 event receiver: operator replies from Open Lines (``ONIMCONNECTORMESSAGEADD``), and the
app's install handshake (``ONAPPINSTALL``/``ONAPPUNINSTALL``, handed to :mod:`tasks.webhook.app_lifecycle`).

Bitrix24 does not retry a failed event delivery and expects a quick answer, so the handler only
checks the request (size, shape, ``auth[application_token]`` in constant time) and enqueues one
``flows.deliver_operator_reply`` per message; the task does the slow work. Each message is enqueued
once: a Redis ``SET NX`` on (chat id, message id) drops a duplicate event, and the task id derived
from the same pair lets Celery and the task's effect marker refuse a second delivery anyway.

Nothing here logs the event's ``auth`` block (it carries an access token) or the application token.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from loguru import logger
from pydantic import ValidationError

from schemas.bitrix24 import MESSAGE_EVENT, ConnectorEvent, unflatten_form
from schemas.flows import OperatorReplyPayload
from schemas.validation import format_validation_errors
from tasks.errors import BodyTooLargeError
from tasks.flows.attachments import reply_files
from tasks.flows.operator_reply import enqueue_operator_reply, reply_fingerprint, reply_task_id
from tasks.runtime import metrics
from tasks.settings import Settings
from tasks.state import app_install, keys
from tasks.webhook.app_lifecycle import AppLifecycle, is_app_event

EVENTS_PATH = "/bitrix24/events"
ENQUEUED_PREFIX = keys.REPLY_ENQUEUED_PREFIX
DEFAULT_MAX_BODY = 256 * 1024

Enqueue = Callable[[OperatorReplyPayload, str], Any]


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison; an unset expected token never matches (refuse rather than trust)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


async def _read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"error": detail}, status_code=status)


def create_app(
    *,
    application_token: str,
    redis_client: redis.Redis,
    enqueue: Enqueue = enqueue_operator_reply,
    max_body: int = DEFAULT_MAX_BODY,
    dedupe_ttl: int = 14 * 24 * 3600,
    lifecycle: AppLifecycle | None = None,
) -> FastAPI:
    """The ASGI app; arguments instead of globals so tests and ``rdb24 webhook`` build their own.

    ``lifecycle`` handles the app's ``ONAPPINSTALL``/``ONAPPUNINSTALL`` (``tasks/webhook/app_lifecycle.py``);
    without it those events are ignored. Once an install was seen, events are checked against the
    application token it brought instead of ``application_token``.
    """
    app = FastAPI(title="rosdomofon-bitrix24 webhook", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    def health() -> JSONResponse:
        try:
            redis_client.ping()
        except redis.RedisError as exc:
            return _problem(503, f"redis unavailable: {type(exc).__name__}")
        return JSONResponse({"status": "ok"})

    @app.post(EVENTS_PATH)
    async def bitrix24_event(request: Request) -> JSONResponse:
        client = request.client.host if request.client else "?"
        try:
            body = await _read_bounded(request, max_body)
        except BodyTooLargeError:
            logger.warning("webhook: body from {} over {} bytes refused", client, max_body)
            return _problem(413, f"body larger than {max_body} bytes")
        try:
            form = unflatten_form(body)
        except (ValueError, UnicodeDecodeError) as exc:
            logger.warning("webhook: unreadable body from {}: {}", client, str(exc)[:200])
            return _problem(400, "body is not a form-encoded Bitrix24 event")
        if lifecycle is not None and is_app_event(form):
            outcome = await asyncio.to_thread(lifecycle.handle, form)
            return JSONResponse(outcome.body, status_code=outcome.status)
        auth = form.get("auth")
        given = auth.get("application_token", "") if isinstance(auth, dict) else ""
        expected = app_install.application_token(redis_client, application_token)
        if not token_matches(given if isinstance(given, str) else "", expected):
            logger.warning(
                "webhook: event {!r} from {} has a wrong application_token", form.get("event"), client
            )
            return _problem(403, "application_token does not match")
        try:
            event = ConnectorEvent.model_validate(form)
        except ValidationError as exc:
            detail = format_validation_errors(exc, root="body", short=True)
            logger.warning("webhook: malformed event from {}: {}", client, detail)
            return _problem(422, f"malformed event: {detail}")
        if event.event.upper() != MESSAGE_EVENT:
            logger.info("webhook: event {} ignored", event.event)
            return JSONResponse({"status": "ignored", "event": event.event})
        task_ids = _enqueue_messages(event, redis_client, enqueue, dedupe_ttl)
        return JSONResponse({"status": "accepted", "tasks": task_ids})

    return app


def _enqueue_messages(
    event: ConnectorEvent, redis_client: redis.Redis, enqueue: Enqueue, dedupe_ttl: int
) -> list[str]:
    task_ids = []
    for item in event.data.MESSAGES:
        payload = OperatorReplyPayload(
            connector=event.data.CONNECTOR,
            line=event.data.LINE,
            chat_id=item.chat.id,
            im_chat_id=item.im.chat_id,
            im_message_id=item.im.message_id,
            text=item.message.text,
            files=reply_files(item.message.files),
            operator_user_id=item.message.user_id,
        )
        task_id = reply_task_id(payload.im_chat_id, payload.im_message_id)
        key = f"{ENQUEUED_PREFIX}:{task_id}"
        if not _first_delivery(redis_client, key, reply_fingerprint(payload), dedupe_ttl):
            logger.info("webhook: {} already enqueued, duplicate event dropped", task_id)
            task_ids.append(task_id)
            continue
        try:
            enqueue(payload, task_id)
        except Exception:
            redis_client.delete(key)  # let a later delivery of the same event try again
            raise
        logger.info("webhook: enqueued {} for dialog {}", task_id, payload.chat_id)
        task_ids.append(task_id)
    return task_ids


def _first_delivery(redis_client: redis.Redis, key: str, fingerprint: str, ttl: int) -> bool:
    """True for an operator message not seen before; a repeated event (same fingerprint) is False.

    The same Bitrix24 ids with another fingerprint are another message (a portal that started again
    empty reuses them): logged, counted, and enqueued. A key from before fingerprints (``1``) counts
    as the same message, as it did then.
    """
    if redis_client.set(key, fingerprint, nx=True, ex=ttl):
        return True
    raw = redis_client.get(key)
    if raw is None:  # expired between the two calls
        return bool(redis_client.set(key, fingerprint, nx=True, ex=ttl))
    seen = raw.decode() if isinstance(raw, bytes) else str(raw)
    if seen == fingerprint or len(seen) != len(fingerprint):  # a repeat, or a key from before fingerprints
        return False
    logger.warning("webhook: {} was another operator message before (ids reused); enqueued", key)
    metrics.MESSAGE_ID_CONFLICTS.inc(step="webhook")
    redis_client.set(key, fingerprint, ex=ttl)
    return True


def app_from_settings(settings: Settings) -> FastAPI:
    """The app ``rdb24 webhook`` serves, wired to this process's Redis and the Celery app."""
    from tasks.runtime.resources import redis_client

    return create_app(
        application_token=settings.bitrix24_application_token.get_secret_value(),
        redis_client=redis_client(),
        max_body=settings.webhook_max_body,
        lifecycle=AppLifecycle(settings, redis_client()),
        dedupe_ttl=settings.effect_marker_ttl,
    )


__all__ = [
    "EVENTS_PATH",
    "app_from_settings",
    "create_app",
    "token_matches",
]
