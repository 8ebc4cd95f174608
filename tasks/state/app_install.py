"""What the Bitrix24 local app's install handshake left us: installed or not, and its application token.

``ONAPPINSTALL`` brings the application token every later event must carry (``auth[application_token]``)
and the OAuth pair (stored with the client's, :mod:`clients.bitrix24.token_store`); ``ONAPPUNINSTALL``
revokes access. The record lets every process see the current state without a restart: the webhook
receiver checks events against the installed token, and ``flows.post_to_chat`` holds Open Lines posts
while the app is uninstalled (:mod:`tasks.state.held`) instead of failing them.
"""

from __future__ import annotations

import time

import redis

from tasks.state import keys

KEY = keys.APP_INSTALL
INSTALLED = "installed"
UNINSTALLED = "uninstalled"


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def record_install(client: redis.Redis, application_token: str, domain: str, member_id: str) -> None:
    client.hset(
        KEY,
        mapping={
            "state": INSTALLED,
            "application_token": application_token,
            "domain": domain,
            "member_id": member_id,
            "at": str(int(time.time())),
        },
    )


def record_uninstall(client: redis.Redis) -> None:
    """Uninstalled: the application token stays, so a late event of the old install is still checked."""
    client.hset(KEY, mapping={"state": UNINSTALLED, "at": str(int(time.time()))})


def state(client: redis.Redis) -> str | None:
    """``installed``, ``uninstalled``, or None when no handshake was ever seen (tokens from settings)."""
    return _text(client.hget(KEY, "state"))


def is_uninstalled(client: redis.Redis) -> bool:
    return state(client) == UNINSTALLED


def application_token(client: redis.Redis, configured: str) -> str:
    """The token events must carry: the installed one once a handshake was seen, else the setting."""
    stored = _text(client.hget(KEY, "application_token"))
    return stored or configured


__all__ = [
    "INSTALLED",
    "UNINSTALLED",
    "application_token",
    "is_uninstalled",
    "record_install",
    "record_uninstall",
    "state",
]
