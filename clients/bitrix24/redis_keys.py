"""Every Redis key a Bitrix24 client keeps, under the namespace its caller passes in.

The client shares state between processes through Redis (the rate-limit bucket, operating-time
parking, the rotating OAuth pair, the refresh and contact-create locks), so every process of one
deployment must use the same namespace. The client does not choose it: ``Bitrix24Config.key_prefix``
carries it in (the task layer's is ``tasks.state.keys.BITRIX24_NAMESPACE``). Spelled here once so the
layout reads on one screen; the limiter, token store and auth get finished keys.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """The key layout under ``namespace`` (no trailing ``:``)."""

    namespace: str

    def bucket(self, limiter_key: str) -> str:
        """hash: the portal's leaky bucket (``level``, ``ts``) every process reserves its requests in."""
        return f"{self.namespace}:bucket:{limiter_key}"

    def operating(self, limiter_key: str) -> str:
        """Prefix of ``<prefix>:used`` (hash method -> seconds:reset) and ``<prefix>:parked:<method>``."""
        return f"{self.namespace}:operating:{limiter_key}"

    def oauth_token(self, limiter_key: str, client_id: str) -> str:
        """string: the current OAuth pair as JSON, rotated on every refresh."""
        return f"{self.namespace}:oauth:{limiter_key}:{client_id}"

    def oauth_refresh_lock(self, client_id: str) -> str:
        """Lock: one process per app refreshes the OAuth pair at a time."""
        return f"{self.namespace}:oauth-refresh:{client_id}"

    def contact_create_lock(self, phone: str) -> str:
        """Lock: one worker at a time creates the contact for a phone."""
        return f"{self.namespace}:contact-create:{phone}"


__all__ = ["RedisKeys"]
