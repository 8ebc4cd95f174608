"""The local app's life on the portal: install, uninstall, reinstall (facts doc §11 "App lifecycle").

- :func:`install` issues a fresh token pair and a new application token, marks the app installed
  and POSTs form-encoded ``ONAPPINSTALL`` (``data{VERSION, ACTIVE, INSTALLED, LANGUAGE_ID}``, ``auth``
  with ``access_token``, ``refresh_token``, ``application_token``, ``domain``, ``client_endpoint``...)
  to the app's handler, once (events are never retried).
- :func:`uninstall` revokes every token, unregisters the app's connectors (activations and connector
  data go with them) and removes its event bindings, then POSTs ``ONAPPUNINSTALL``
  (``data{LANGUAGE_ID, CLEAN}``, ``auth`` with the application token and no usable token) to the
  handlers that were bound to it.
- ``app.info`` answers for the calling app (``ID, CODE, VERSION, STATUS, INSTALLED``); ``CODE`` is
  the local app's client id.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import requests

from sandbox.bitrix24.forms import encode, flatten
from sandbox.bitrix24.state import Context, Portal

INSTALL_EVENT = "ONAPPINSTALL"
UNINSTALL_EVENT = "ONAPPUNINSTALL"


def app_info(portal: Portal, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    app = portal.oauth.app
    return {
        "ID": 1,
        "CODE": app.client_id,
        "VERSION": 1,
        "STATUS": "L",
        "INSTALLED": portal.app_installed,
        "PAYMENT_EXPIRED": "N",
        "DAYS": None,
        "LANGUAGE_ID": "ru",
    }


def _post(handler: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    try:
        response = requests.post(
            handler,
            data=encode(pairs),
            timeout=30,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "Bitrix24 Webhook Engine",
            },
        )
    except requests.RequestException as exc:
        return {"handler": handler, "error": type(exc).__name__}
    try:
        body = response.json()
    except ValueError:
        body = None
    return {"handler": handler, "status": response.status_code, "body": body}


def install(portal: Portal, base_url: str, handler: str) -> dict[str, Any]:
    """Install (or reinstall) the app and deliver ``ONAPPINSTALL`` to ``handler``."""
    with portal.lock:
        app = portal.oauth.app
        app.application_token = secrets.token_hex(16)
        access, refresh, expires = portal.oauth.issue()
        portal.app_installed = True
        auth = {
            "access_token": access,
            "expires": int(expires),
            "expires_in": int(portal.oauth.access_ttl),
            "scope": app.scope,
            "domain": portal.domain,
            "server_endpoint": f"{base_url}/rest/",
            "status": "L",
            "client_endpoint": f"{base_url}/rest/",
            "member_id": app.member_id,
            "user_id": 1,
            "refresh_token": refresh,
            "application_token": app.application_token,
        }
    event = {
        "event": INSTALL_EVENT,
        "event_handler_id": 0,
        "data": {"VERSION": 1, "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "ru"},
        "ts": int(time.time()),
        "auth": auth,
    }
    return {
        "delivery": _post(handler, flatten(event)),
        "application_token": app.application_token,
        "tokens": (access, refresh),
    }


def uninstall(portal: Portal, base_url: str, clean: bool = False) -> dict[str, Any]:
    """Uninstall the app: revoke, unregister, unbind; then deliver ``ONAPPUNINSTALL``."""
    with portal.lock:
        app = portal.oauth.app
        handlers = [h["handler"] for h in portal.handlers if h["event"] == UNINSTALL_EVENT]
        portal.oauth.access.clear()
        portal.oauth.refresh.clear()
        portal.connectors.clear()
        portal.active.clear()
        portal.connector_data.clear()
        portal.handlers.clear()
        portal.app_installed = False
        auth = {
            "domain": portal.domain,
            "client_endpoint": f"{base_url}/rest/",
            "server_endpoint": f"{base_url}/rest/",
            "member_id": app.member_id,
            "application_token": app.application_token,
        }
    event = {
        "event": UNINSTALL_EVENT,
        "event_handler_id": 0,
        "data": {"LANGUAGE_ID": "ru", "CLEAN": 1 if clean else 0},
        "ts": int(time.time()),
        "auth": auth,
    }
    return {"deliveries": [_post(handler, flatten(event)) for handler in handlers]}


METHODS = {"app.info": app_info}

__all__ = ["METHODS", "app_info", "install", "uninstall"]
