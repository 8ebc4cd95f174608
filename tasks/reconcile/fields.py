"""The custom contact fields reconciliation writes, ensured once per portal.

``crm.contact.userfield.add`` is not idempotent, so the client lists the existing fields first and
adds only the missing ones. That costs a request or more, so success is remembered in Redis under
``rdb24:reconcile:userfields`` with a digest of the specs: later runs skip it until the specs change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Protocol

import redis
from loguru import logger

from schemas.bitrix24 import UserFieldSpec
from tasks.reconcile import mapping as m

ENSURED_KEY = "rdb24:reconcile:userfields"

SPECS: tuple[UserFieldSpec, ...] = (
    UserFieldSpec(FIELD_NAME=m.F_ACCOUNT_ID, USER_TYPE_ID="string", LABEL="RosDomofon: account id"),
    UserFieldSpec(FIELD_NAME=m.F_ACCOUNT_NUMBER, USER_TYPE_ID="string", LABEL="RosDomofon: account number"),
    UserFieldSpec(FIELD_NAME=m.F_OWNER_ID, USER_TYPE_ID="string", LABEL="RosDomofon: subscriber id"),
    UserFieldSpec(FIELD_NAME=m.F_PHONE, USER_TYPE_ID="string", LABEL="RosDomofon: owner phone"),
    UserFieldSpec(FIELD_NAME=m.F_BLOCKED, USER_TYPE_ID="boolean", LABEL="RosDomofon: account blocked"),
    UserFieldSpec(FIELD_NAME=m.F_BLOCK_REASON, USER_TYPE_ID="string", LABEL="RosDomofon: block reason"),
    UserFieldSpec(FIELD_NAME=m.F_COMPANY, USER_TYPE_ID="string", LABEL="RosDomofon: company"),
    UserFieldSpec(FIELD_NAME=m.F_SERVICES, USER_TYPE_ID="string", LABEL="RosDomofon: connected services"),
    UserFieldSpec(FIELD_NAME=m.F_SERVICES_ACTIVE, USER_TYPE_ID="string", LABEL="RosDomofon: active services"),
)


class UserFieldClient(Protocol):
    def ensure_contact_userfields(self, specs: Iterable[UserFieldSpec | Any]) -> dict[str, int]: ...


def specs_digest(specs: Iterable[UserFieldSpec] = SPECS) -> str:
    body = json.dumps([s.to_wire() for s in specs], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def ensure_fields(client: UserFieldClient, store: redis.Redis, *, force: bool = False) -> bool:
    """Create missing userfields unless this spec set was already ensured; True when the portal was asked."""
    digest = specs_digest()
    if not force and _text(store.get(ENSURED_KEY)) == digest:
        return False
    ids = client.ensure_contact_userfields(SPECS)
    store.set(ENSURED_KEY, digest)
    logger.info("reconcile: contact userfields ensured ({} fields)", len(ids))
    return True


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


__all__ = ["ENSURED_KEY", "SPECS", "ensure_fields", "specs_digest"]
