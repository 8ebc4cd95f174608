"""The Bitrix24 event receiver: operator replies from Open Lines (``ONIMCONNECTORMESSAGEADD``), and the
app's install handshake (``ONAPPINSTALL``/``ONAPPUNINSTALL``, handed to :mod:`tasks.webhook.app_lifecycle`).

Bitrix24 never retries an event delivery and expects a quick answer, so the handler only checks the
request (size, shape, ``auth[application_token]`` in constant time), writes the event's replies to
this process's durable spool (``tasks.webhook.spool``, fsynced SQLite) and answers 200; it answers
503 only when it could not store them. The drain thread (``tasks.webhook.drain``) then publishes one
``flows.deliver_operator_reply`` per message, deduplicated by (chat id, message id), and deletes each
row once the broker took it; Redis being slow or down delays replies, it does not lose them. The
store runs in the thread pool: the event loop never waits on the disk, Redis or Celery.

Nothing here logs the event's ``auth`` block (it carries an access token) or the application token.
"""

from __future__ import annotations

import asyncio
import hmac
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from loguru import logger
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from schemas.bitrix24 import MESSAGE_EVENT, ConnectorEvent, unflatten_form
from schemas.validation import format_validation_errors
from tasks.errors import BodyTooLargeError
from tasks.flows.operator_reply import enqueue_operator_reply
from tasks.flows.reply_intake import Enqueue, replies_of
from tasks.settings import Settings
from tasks.state import app_install
from tasks.webhook.app_lifecycle import AppLifecycle, is_app_event
from tasks.webhook.drain import Drainer
from tasks.webhook.spool import Spool

EVENTS_PATH = "/bitrix24/events"
DEFAULT_MAX_BODY = 256 * 1024


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
    spool_dir: Path,
    enqueue: Enqueue = enqueue_operator_reply,
    max_body: int = DEFAULT_MAX_BODY,
    dedupe_ttl: int = 14 * 24 * 3600,
    lifecycle: AppLifecycle | None = None,
) -> FastAPI:
    """The ASGI app; arguments instead of globals so tests and ``rdb24 webhook`` build their own.

    ``lifecycle`` handles the app's ``ONAPPINSTALL``/``ONAPPUNINSTALL`` (``tasks/webhook/app_lifecycle.py``);
    without it those events are ignored. Once an install was seen, events are checked against the
    application token it brought instead of ``application_token`` (the last one read is kept for
    while Redis cannot be asked, so replies are still taken then).

    The spool and its drain thread live with the app (its lifespan): opened at startup, so leftovers
    of a previous receiver in ``spool_dir`` are drained as soon as the new one is up.
    """
    holder: dict[str, Drainer] = {}
    known_token = {"value": application_token}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        spool = Spool.for_this_process(spool_dir)
        drainer = Drainer(spool, redis_client, enqueue=enqueue, dedupe_ttl=dedupe_ttl).start()
        holder["drainer"] = drainer
        logger.info("webhook: spooling events in {}", spool.path)
        try:
            yield
        finally:
            drainer.stop()
            spool.close()

    app = FastAPI(
        title="rosdomofon-bitrix24 webhook",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )

    def expected_token() -> str:
        try:
            known_token["value"] = app_install.application_token(redis_client, application_token)
        except redis.RedisError as exc:
            logger.warning("webhook: install state unreadable ({}); the last known token is used", exc)
        return known_token["value"]

    @app.get("/health")
    def health() -> JSONResponse:
        drainer = holder["drainer"]
        if not drainer.spool.writable():
            return _problem(503, "the spool cannot be written")
        try:
            redis_client.ping()
            broker = "ok"
        except redis.RedisError as exc:  # events are still taken: they wait in the spool
            broker = f"unavailable: {type(exc).__name__}"
        return JSONResponse({"status": "ok", "redis": broker, "spooled": drainer.depth()})

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
        expected = await run_in_threadpool(expected_token)
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
        rows = [(task_id, payload.model_dump_json()) for task_id, payload in replies_of(event.data)]
        drainer = holder["drainer"]
        try:
            await run_in_threadpool(drainer.spool.store, rows)
        except (sqlite3.Error, OSError) as exc:
            logger.error("webhook: could not spool {} repl(ies): {}: {}", len(rows), type(exc).__name__, exc)
            return _problem(503, "the event could not be stored; nothing was accepted")
        drainer.wake()
        return JSONResponse({"status": "accepted", "tasks": [task_id for task_id, _ in rows]})

    return app


def app_from_settings(settings: Settings) -> FastAPI:
    """The app ``rdb24 webhook`` serves, wired to this process's Redis and the Celery app."""
    from tasks.runtime.resources import redis_client

    return create_app(
        application_token=settings.bitrix24_application_token.get_secret_value(),
        redis_client=redis_client(),
        spool_dir=Path(settings.webhook_spool_dir),
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
