"""The OAuth server: ``/oauth/authorize/`` and GET ``/oauth/token/`` with rotating refresh tokens; and
:class:`OAuthCredentials`, what an installed local app holds."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from sandbox.bitrix24.state import ApiError, Context, Portal

CODE_TTL = 30.0


@dataclass(frozen=True)
class OAuthCredentials:
    """What an installed local app knows: its keys, endpoints and the install-time token pair."""

    client_id: str
    client_secret: str
    client_endpoint: str
    server_endpoint: str
    token_url: str
    authorize_url: str
    access_token: str
    refresh_token: str
    application_token: str
    member_id: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def authenticate(portal: Portal, token: str | None, source: str) -> Context:
    """Map an ``auth`` access token to the app context, or raise the portal's 401."""
    state = portal.oauth
    if not token:
        raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
    with portal.lock:
        expires = state.access.get(token)
    if expires is None:
        raise ApiError("invalid_token", "The access token provided is invalid.", 401)
    if time.time() >= expires:
        raise ApiError("expired_token", "The access token provided has expired.", 401)
    return Context(identity=f"app:{state.app.client_id}", oauth=True, user_id=1, source=source)


def authorize(portal: Portal, client_id: str) -> str:
    if client_id != portal.oauth.app.client_id:
        raise ApiError("invalid_client", "Wrong client", 400)
    code = secrets.token_hex(16)
    with portal.lock:
        portal.oauth.codes[code] = time.time() + CODE_TTL
    return code


def token_answer(portal: Portal, base_url: str, access: str, refresh: str, expires: float) -> dict[str, Any]:
    state = portal.oauth
    return {
        "access_token": access,
        "expires": int(expires),
        "expires_in": int(state.access_ttl),
        "scope": state.app.scope,
        "domain": portal.domain,
        "server_endpoint": f"{base_url}/rest/",
        "status": "L",
        "client_endpoint": f"{base_url}/rest/",
        "member_id": state.app.member_id,
        "user_id": 1,
        "refresh_token": refresh,
    }


def exchange(portal: Portal, params: dict[str, str], base_url: str) -> dict[str, Any]:
    """Handle GET /oauth/token/: authorization_code or refresh_token grants."""
    state = portal.oauth
    grant = params.get("grant_type")
    if (
        params.get("client_id") != state.app.client_id
        or params.get("client_secret") != state.app.client_secret
    ):
        raise ApiError("invalid_client", "Invalid client credentials", 401)
    with portal.lock:
        if grant == "authorization_code":
            expires = state.codes.pop(params.get("code", ""), None)
            if expires is None or time.time() > expires:
                raise ApiError("invalid_grant", "Invalid authorization code", 400)
        elif grant == "refresh_token":
            old = params.get("refresh_token", "")
            if old not in state.refresh:
                raise ApiError("invalid_grant", "Invalid refresh token", 400)
            del state.refresh[old]  # rotation: the old refresh token dies now
            state.refreshes += 1
        else:
            raise ApiError("invalid_request", f"grant_type {grant!r} is not supported", 400)
        access, refresh, expires_at = state.issue()
    return token_answer(portal, base_url, access, refresh, expires_at)


def expire_access_tokens(portal: Portal) -> int:
    with portal.lock:
        for token in portal.oauth.access:
            portal.oauth.access[token] = 0.0
        return len(portal.oauth.access)
