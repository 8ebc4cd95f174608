"""Subscriber messages held while the Bitrix24 app is uninstalled, until a reinstall posts them.

Uninstalling the app revokes our tokens and unregisters the connector, so no post can succeed; a
retrying task would burn its budget and end as a dead letter. ``flows.post_to_chat`` keeps the whole
post payload here instead (a hash, no expiry: as durable as the in-flight ledger it replaces for the
message), and the install handshake publishes every held post again (:mod:`tasks.webhook.app_lifecycle`).
"""

from __future__ import annotations

import redis

from tasks.state import keys

KEY = keys.OPENLINES_HELD


def hold(client: redis.Redis, message_id: str, payload_json: str) -> None:
    client.hset(KEY, message_id, payload_json)


def release(client: redis.Redis, message_id: str) -> None:
    client.hdel(KEY, message_id)


def held(client: redis.Redis) -> dict[str, str]:
    """Every held message id and its post payload JSON."""
    raw = client.hgetall(KEY)
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in raw.items()
    }


def count(client: redis.Redis) -> int:
    return int(client.hlen(KEY))


__all__ = ["count", "held", "hold", "release"]
