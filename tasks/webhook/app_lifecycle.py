"""The Bitrix24 local app's install handshake: ``ONAPPINSTALL`` and ``ONAPPUNINSTALL`` at our webhook.

Install and go: when an administrator installs the app (a "script only" local app whose handler is
``<WEBHOOK_PUBLIC_URL>/bitrix24/events``), the portal POSTs ``ONAPPINSTALL`` with the token pair and
the application token (facts doc §11). We

1. check the event is real: its access token must work on OUR portal (``BITRIX24_CLIENT_ENDPOINT``,
   never the address the event names) and ``app.info`` must name OUR app (``BITRIX24_CLIENT_ID``).
   The application token cannot be checked (the event is what brings it), so this call is the proof;
2. store the pair where every worker's client reads it (the client's Redis token store) and the
   application token in :mod:`tasks.state.app_install` (later events are checked against it);
3. register the connector, bind the events and activate the line (:func:`set_up_after_install`);
   a failure here is logged, not fatal: the first post sets up again (the memos were dropped);
4. publish again every post held while the app was uninstalled (:mod:`tasks.state.held`).

``ONAPPUNINSTALL`` carries no usable token (access is already revoked) but does carry the application
token, which must match. We mark the app uninstalled, drop the revoked pair and the setup memos: from
then on ``flows.post_to_chat`` holds Open Lines posts instead of failing them, and a reinstall runs the
whole handshake again.

Kept apart from the receiver so its event dispatch only has to call :func:`is_app_event` and
:meth:`AppLifecycle.handle`.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any

import redis
from loguru import logger

from clients.bitrix24.token_store import MemoryTokenStore, RedisTokenStore
from clients.errors import IntegrationError
from schemas.bitrix24 import OAuthToken
from schemas.flows import PostToChatPayload
from tasks.flows import openlines
from tasks.flows.chat import post_to_chat
from tasks.runtime import resources
from tasks.settings import Settings
from tasks.state import app_install, held, inflight

INSTALL_EVENT = "ONAPPINSTALL"
UNINSTALL_EVENT = openlines.UNINSTALL_EVENT
APP_EVENTS = frozenset({INSTALL_EVENT, UNINSTALL_EVENT})


def is_app_event(form: dict[str, Any]) -> bool:
    return str(form.get("event", "")).upper() in APP_EVENTS


def _same(given: str, expected: str) -> bool:
    return bool(given and expected) and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class Outcome:
    """What the receiver answers: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any]


class AppLifecycle:
    """Install/uninstall handling for one deployment (its settings and Redis)."""

    def __init__(self, settings: Settings, cache: redis.Redis) -> None:
        self.settings = settings
        self.cache = cache

    # --- the dispatch entry ------------------------------------------------------------------------

    def handle(self, form: dict[str, Any]) -> Outcome:
        if not self.settings.bitrix24_oauth_configured:
            logger.warning("webhook: {} ignored: no OAuth app is configured", form.get("event"))
            return Outcome(200, {"status": "ignored", "event": form.get("event")})
        raw = form.get("auth")
        auth: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if str(form.get("event", "")).upper() == INSTALL_EVENT:
            return self.install(auth)
        return self.uninstall(auth)

    # --- ONAPPINSTALL ------------------------------------------------------------------------------

    def install(self, auth: dict[str, Any]) -> Outcome:
        access, refresh = str(auth.get("access_token") or ""), str(auth.get("refresh_token") or "")
        application_token = str(auth.get("application_token") or "")
        if not (access and refresh and application_token):
            logger.warning("webhook: ONAPPINSTALL without access, refresh and application tokens refused")
            return Outcome(
                400, {"error": "ONAPPINSTALL needs auth[access_token, refresh_token, application_token]"}
            )
        token = self._proven(self._token(access, refresh, auth))
        if token is None:
            return Outcome(403, {"error": "the install tokens do not belong to this app on this portal"})
        config = resources.bitrix24_config(self.settings)
        store = RedisTokenStore(
            self.cache, config.redis_keys.oauth_token(config.bucket_key, config.client_id or "")
        )
        store.save(token)
        app_install.record_install(
            self.cache, application_token, str(auth.get("domain") or ""), str(auth.get("member_id") or "")
        )
        resources.reset()  # this process's client was built before the pair existed
        logger.info("bitrix24 app installed on {}: tokens stored", auth.get("domain") or "the portal")
        line = self._set_up()
        released = self.release_held()
        return Outcome(200, {"status": "installed", "line": line, "released": released})

    def _token(self, access: str, refresh: str, auth: dict[str, Any]) -> OAuthToken:
        expires_in = str(auth.get("expires_in") or "3600")
        seconds = int(expires_in) if expires_in.isdigit() else 3600
        return OAuthToken(
            access_token=access,
            refresh_token=refresh,
            expires_in=seconds,
            expires=int(time.time()) + seconds,
            # Our configured endpoints, never the event's: a forged event must not pick where we call.
            client_endpoint=self.settings.bitrix24_client_endpoint,
            server_endpoint=self.settings.bitrix24_server_endpoint or None,
            member_id=str(auth.get("member_id") or "") or None,
            domain=str(auth.get("domain") or "") or None,
        )

    def _proven(self, token: OAuthToken) -> OAuthToken | None:
        """The pair to keep if ``app.info`` with it, on our portal, names our client id; else None.

        The pair is read back from the probe's store: had the access token expired in the meantime,
        the probe refreshed it, and the original refresh token is dead.
        """
        from clients.bitrix24 import Bitrix24Client

        config = resources.bitrix24_config(self.settings)
        store = MemoryTokenStore(token)
        probe = Bitrix24Client(config, token_store=store, rate_limit_retries=0)
        try:
            info = probe.call("app.info")
        except IntegrationError as exc:
            logger.warning("webhook: ONAPPINSTALL tokens refused by the portal ({})", type(exc).__name__)
            return None
        finally:
            probe.close()
        names = {str(info.get(k) or "") for k in ("CODE", "CLIENT_ID")} if isinstance(info, dict) else set()
        if self.settings.bitrix24_client_id not in names:
            logger.warning("webhook: ONAPPINSTALL tokens belong to another app ({})", sorted(names - {""}))
            return None
        return store.load()

    def _set_up(self) -> str | None:
        settings = self.settings
        try:
            return openlines.set_up_after_install(
                resources.bitrix24_client(),
                self.cache,
                settings.openlines_connector_id,
                settings.openlines_line_id,
                settings.webhook_public_url,
            )
        except IntegrationError as exc:
            logger.warning("open lines setup after install failed ({}); the first post sets up again", exc)
            return None

    def release_held(self) -> int:
        """Publish every held post again (fresh task ids; the post's effect marker keeps it to one)."""
        released = 0
        stamp = int(time.time())
        for message_id, raw in held.held(self.cache).items():
            payload = PostToChatPayload.model_validate_json(raw)
            inflight.track(self.cache, message_id, inflight.MESSAGE, payload.message)
            post_to_chat.apply_async(
                kwargs=payload.model_dump(mode="json"), task_id=f"msg:{message_id}:post:installed-{stamp}"
            )
            held.release(self.cache, message_id)
            released += 1
        if released:
            logger.info("bitrix24 app installed: {} held message(s) published again", released)
        return released

    # --- ONAPPUNINSTALL ----------------------------------------------------------------------------

    def uninstall(self, auth: dict[str, Any]) -> Outcome:
        expected = app_install.application_token(
            self.cache, self.settings.bitrix24_application_token.get_secret_value()
        )
        if not _same(str(auth.get("application_token") or ""), expected):
            logger.warning("webhook: ONAPPUNINSTALL with a wrong application_token refused")
            return Outcome(403, {"error": "application_token does not match"})
        app_install.record_uninstall(self.cache)
        config = resources.bitrix24_config(self.settings)
        self.cache.delete(config.redis_keys.oauth_token(config.bucket_key, config.client_id or ""))
        connector, line = self.settings.openlines_connector_id, self.settings.openlines_line_id
        for key in self.cache.scan_iter(f"{openlines.READY_PREFIX}:{connector}:*"):
            self.cache.delete(key)
        self.cache.delete(openlines.LINE_KEY)
        resources.reset()
        logger.warning(
            "bitrix24 app uninstalled: Open Lines posts are held until it is installed again (line {})",
            line or "auto",
        )
        return Outcome(200, {"status": "uninstalled"})


__all__ = ["APP_EVENTS", "AppLifecycle", "Outcome", "is_app_event"]
