"""Posting subscriber messages into a Bitrix24 Open Line through our connector.

The connector is set up on first use and remembered in Redis, so the setup calls run once per line
(under a lock, so concurrent first messages do not race): ``imconnector.register`` (re-registering
updates, so it is idempotent), ``event.bind`` of ``ONIMCONNECTORMESSAGEADD`` and ``ONAPPUNINSTALL`` to
our webhook (when ``WEBHOOK_PUBLIC_URL`` is set) and ``imconnector.activate``. The app's install
handshake runs the same setup at once (:func:`set_up_after_install`).

One subscriber is one dialog: ``user.id`` and ``chat.id`` are ``abonent-<id>``, and ``message.id``
is our message id (or a part's ``<id>#i``), the only key the connector API keeps for us.
"""

from __future__ import annotations

from typing import Any, Protocol

import redis
from loguru import logger

from clients.errors import FixInputError
from schemas.bitrix24 import (
    MESSAGE_EVENT,
    ConnectorChat,
    ConnectorMessage,
    ConnectorMessageBody,
    ConnectorUser,
    SendMessagesResult,
)
from schemas.flows import AccountRef, SubscriberMessage
from tasks.errors import OpenLinesRejectedError, OpenLinesSetupError
from tasks.flows.attachments import openlines_files, web_url
from tasks.state import effects, keys, subscribers

READY_PREFIX = keys.OPENLINES_READY_PREFIX
LINE_KEY = keys.OPENLINES_LINE
READY_TTL = 24 * 3600  # re-check daily: bindings vanish when the app is updated or reinstalled
CONNECTOR_NAME = "RosDomofon"
UNINSTALL_EVENT = "ONAPPUNINSTALL"
# Operator replies, and the uninstall (so Open Lines posting stops safely: tasks/webhook/app_lifecycle.py).
BOUND_EVENTS = (MESSAGE_EVENT, UNINSTALL_EVENT)


class OpenLinesPortal(Protocol):
    """The part of ``Bitrix24Client`` this module uses."""

    def register_connector(self, connector: str, name: str, placement_handler: str, **kw: Any) -> bool: ...

    def bind_event(self, event: str, handler: str) -> bool: ...

    def activate_connector(self, connector: str, line: str | int, active: bool = True) -> bool: ...

    def list_open_lines(self) -> list[dict[str, Any]]: ...

    def send_connector_messages(
        self, connector: str, line: str | int, messages: Any
    ) -> SendMessagesResult: ...


def events_url(public_url: str) -> str:
    return public_url.rstrip("/") + "/bitrix24/events"


def resolve_line(portal: OpenLinesPortal, cache: redis.Redis, configured: str) -> str:
    """``OPENLINES_LINE_ID`` if set, else the portal's first line (remembered)."""
    if configured:
        return configured
    cached = cache.get(LINE_KEY)
    if cached is not None:
        return cached.decode() if isinstance(cached, bytes) else str(cached)
    lines = portal.list_open_lines()
    if not lines:
        raise OpenLinesSetupError("the portal has no Open Line; create one or set OPENLINES_LINE_ID")
    line = str(lines[0].get("ID") or lines[0].get("id"))
    cache.set(LINE_KEY, line, ex=READY_TTL)
    logger.info("open lines: using line {} (first of {})", line, len(lines))
    return line


SETUP_LOST_CODES = frozenset({"not_active_line", "imconnector_no_correct_provider"})


def forget_setup(cache: redis.Redis, connector: str, line: str) -> None:
    """Drop the "connector ready" memo, e.g. after the portal answered that the line is not active."""
    cache.delete(f"{READY_PREFIX}:{connector}:{line}")


def setup_lost(exc: FixInputError) -> bool:
    """The portal forgot our connector (app reinstalled, line deactivated): set it up again."""
    return (exc.code or "").lower() in SETUP_LOST_CODES


def ensure_connector(
    portal: OpenLinesPortal,
    cache: redis.Redis,
    connector: str,
    line: str,
    public_url: str,
    *,
    lease: effects.Lease | None = None,
) -> None:
    """Register, bind and activate the connector for ``line`` once (cached; idempotent if repeated).

    ``lease`` is the caller's (the post lock's): checked with our own setup lease before the calls,
    so a worker stopped past either lease stops here rather than going on beside its successor.
    """
    ready_key = f"{READY_PREFIX}:{connector}:{line}"
    if cache.get(ready_key) is not None:
        return
    with effects.locked(cache, f"openlines-setup:{connector}:{line}", wait=60) as setup:
        if cache.get(ready_key) is not None:
            return
        for held in (setup, lease):
            if held is not None:
                held.ensure_held()
        handler = events_url(public_url) if public_url else ""
        portal.register_connector(connector, CONNECTOR_NAME, handler or "https://localhost/rosdomofon")
        if handler:
            for event in BOUND_EVENTS:
                try:
                    portal.bind_event(event, handler)
                except FixInputError as exc:  # "handler already bound" is success for us
                    logger.info("open lines: event.bind {} answered {}; already bound", event, exc.code)
        else:
            logger.warning("open lines: WEBHOOK_PUBLIC_URL is empty, operator replies will not reach us")
        portal.activate_connector(connector, line, True)
        cache.set(ready_key, "1", ex=READY_TTL)
        logger.info("open lines: connector {} ready on line {}", connector, line)


def _whole_seconds(sent_at: float | None) -> int | None:
    """``message.date`` is unix seconds (the portal ignores it anyway: the dialog shows arrival time)."""
    return int(sent_at) if sent_at is not None else None


def set_up_after_install(
    portal: OpenLinesPortal, cache: redis.Redis, connector: str, configured_line: str, public_url: str
) -> str:
    """A (re)install unregistered whatever the portal had: forget our memos and set everything up again.

    Returns the line. Bindings and connectors vanish on uninstall (facts doc §11), so nothing cached
    from an earlier install can be trusted.
    """
    cache.delete(LINE_KEY)
    line = resolve_line(portal, cache, configured_line)
    forget_setup(cache, connector, line)
    ensure_connector(portal, cache, connector, line, public_url)
    return line


def connector_message(
    message: SubscriberMessage,
    account: AccountRef | None,
    text: str,
    *,
    message_id: str | None = None,
    with_picture: bool = True,
) -> ConnectorMessage:
    """One connector message; ``message_id`` (default: the message's) is its ``message.id``, e.g. a part's.

    The subscriber's picture goes in ``message.files`` unless ``with_picture`` is off (parts after the
    first of a long text: the picture is sent once).
    """
    dialog = subscribers.dialog_id(message.abonent_id)
    picture = web_url(message.image_url)
    chat_name = f"Абонент +{message.phone}" + (
        f", л/с {account.number}" if account and account.number else ""
    )
    return ConnectorMessage(
        user=ConnectorUser(
            id=dialog,
            name="Абонент",
            last_name="РосДомофон",
            phone=f"+{message.phone}",
            skip_phone_validate="Y",
        ),
        message=ConnectorMessageBody(
            id=message_id or message.message_id,
            date=_whole_seconds(message.sent_at),
            text=text,
            files=openlines_files(picture) if picture and with_picture else None,
        ),
        chat=ConnectorChat(id=dialog, name=chat_name),
    )


def send_to_line(portal: OpenLinesPortal, connector: str, line: str, item: ConnectorMessage) -> int | None:
    """Send one message; returns the Open Lines session CHAT_ID (our dialog's internal chat)."""
    outcome = portal.send_connector_messages(connector, line, [item])
    results = outcome.DATA.RESULT
    if not outcome.SUCCESS or not results or not results[0].SUCCESS:
        errors = results[0].ERRORS if results else None
        raise OpenLinesRejectedError(f"imconnector.send.messages refused the message: {errors!r}"[:500])
    session = results[0].session
    return session.CHAT_ID if session is not None else None


__all__ = [
    "connector_message",
    "ensure_connector",
    "events_url",
    "forget_setup",
    "resolve_line",
    "send_to_line",
    "set_up_after_install",
    "setup_lost",
]
