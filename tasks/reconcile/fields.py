"""The custom contact fields reconciliation writes, ensured once per portal.

``crm.contact.userfield.add`` is not idempotent, so the existing fields are listed first and only the
missing ones added, all in one ``batch`` (two requests in total, instead of one per field). Success
is remembered in Redis under ``rdb24:reconcile:userfields`` with a digest of the specs: later runs
skip it until the specs change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Protocol

import redis
from loguru import logger

from schemas.bitrix24 import BatchResult, UserFieldSpec
from tasks.errors import UserFieldError
from tasks.reconcile import mapping as m
from tasks.state import keys

ENSURED_KEY = keys.RECONCILE_USERFIELDS

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
    def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...

    def batch(self, commands: Any, halt: bool = False) -> BatchResult: ...


def add_fields(spec: UserFieldSpec) -> dict[str, Any]:
    fields = spec.to_wire()
    fields["FIELD_NAME"] = spec.FIELD_NAME[len("UF_CRM_") :]  # the portal adds UF_CRM_ itself
    if spec.LABEL:
        fields.setdefault("EDIT_FORM_LABEL", spec.LABEL)
        fields.setdefault("LIST_COLUMN_LABEL", spec.LABEL)
    return fields


def ensure_userfields(client: UserFieldClient, specs: Iterable[UserFieldSpec] = SPECS) -> list[str]:
    """Create the missing fields; returns the names created (empty when all existed)."""
    listed = client.call("crm.contact.userfield.list", {})
    existing = (
        {str(row.get("FIELD_NAME")) for row in listed if isinstance(row, dict)}
        if isinstance(listed, list)
        else set()
    )
    missing = [s for s in specs if s.FIELD_NAME not in existing]
    if not missing:
        return []
    outcome = client.batch(
        {s.FIELD_NAME: ("crm.contact.userfield.add", {"fields": add_fields(s)}) for s in missing}
    )
    if outcome.errors:
        name, error = next(iter(outcome.errors.items()))
        raise UserFieldError(
            f"crm.contact.userfield.add {name}: {error.error} {error.error_description}".strip()
        )
    return [s.FIELD_NAME for s in missing]


def specs_digest(specs: Iterable[UserFieldSpec] = SPECS) -> str:
    body = json.dumps([s.to_wire() for s in specs], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def ensure_fields(client: UserFieldClient, store: redis.Redis, *, force: bool = False) -> bool:
    """Create missing userfields unless this spec set was already ensured; True when the portal was asked."""
    digest = specs_digest()
    if not force and _text(store.get(ENSURED_KEY)) == digest:
        return False
    created = ensure_userfields(client, SPECS)
    store.set(ENSURED_KEY, digest)
    logger.info(
        "reconcile: contact userfields ensured ({} created: {})", len(created), ", ".join(created) or "-"
    )
    return True


def _text(raw: Any) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


__all__ = ["ENSURED_KEY", "SPECS", "ensure_fields", "ensure_userfields", "specs_digest"]
