"""What the Bitrix24 contact of one RosDomofon account should look like.

Reconciliation owns only the fields listed here (``OWNED_FIELDS``, the ``UF_CRM_RD_*`` userfields
plus ``ORIGINATOR_ID``/``ORIGIN_ID`` and one phone row); everything else on the contact belongs to
the operators and is never read or written after creation. ``ORIGIN_ID`` is the account id, so a
contact created by a run that died before recording it is found again instead of duplicated.

Values are plain strings because the portal gives userfields back as strings (or numbers, or
``"1"``/``"0"`` for booleans): :func:`normalise_value` folds what the portal returns into the same
string form the mapping produces, so comparing them is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from schemas.phone import InvalidPhoneError, normalize_phone
from schemas.rosdomofon import Account, Connection

ORIGINATOR = "rosdomofon"
PHONE_VALUE_TYPE = "MOBILE"

# Userfield names (the UF_CRM_ prefix is forced by the portal).
F_ACCOUNT_ID = "UF_CRM_RD_ACCOUNT_ID"
F_ACCOUNT_NUMBER = "UF_CRM_RD_ACCOUNT_NUMBER"
F_OWNER_ID = "UF_CRM_RD_OWNER_ID"
F_PHONE = "UF_CRM_RD_PHONE"
F_BLOCKED = "UF_CRM_RD_BLOCKED"
F_BLOCK_REASON = "UF_CRM_RD_BLOCK_REASON"
F_COMPANY = "UF_CRM_RD_COMPANY"
F_SERVICES = "UF_CRM_RD_SERVICES"
F_SERVICES_ACTIVE = "UF_CRM_RD_SERVICES_ACTIVE"

BOOLEAN_FIELDS = frozenset({F_BLOCKED})
USERFIELDS: tuple[str, ...] = (
    F_ACCOUNT_ID,
    F_ACCOUNT_NUMBER,
    F_OWNER_ID,
    F_PHONE,
    F_BLOCKED,
    F_BLOCK_REASON,
    F_COMPANY,
    F_SERVICES,
    F_SERVICES_ACTIVE,
)
# Everything a reconciliation compares; the scan selects exactly these (plus ID and PHONE).
OWNED_FIELDS: tuple[str, ...] = ("ORIGINATOR_ID", "ORIGIN_ID", *USERFIELDS)


class DesiredContact(BaseModel):
    """The contact an account should have: owned fields, the owner's phone, a name for creation."""

    model_config = ConfigDict(frozen=True)

    account_id: int
    phone: str | None
    fields: dict[str, str]
    name: str

    @property
    def origin_id(self) -> str:
        return str(self.account_id)

    def create_fields(self) -> dict[str, Any]:
        """``crm.contact.add`` fields: owned fields, a name and the phone (the only time NAME is set)."""
        fields: dict[str, Any] = {"NAME": self.name, "OPENED": "Y", **self.fields}
        if self.phone is not None:
            fields["PHONE"] = [{"VALUE": self.phone, "VALUE_TYPE": PHONE_VALUE_TYPE}]
        return fields


def owner_phone(account: Account) -> str | None:
    """The owner's canonical phone, or None when RosDomofon has none we can use."""
    if account.owner.phone is None:
        return None
    try:
        return normalize_phone(account.owner.phone)
    except InvalidPhoneError:
        return None


def connection_state(connection: Connection, account_blocked: bool) -> str:
    """``active`` only when neither the connection nor its account is blocked (as [LP] reads it)."""
    if connection.blocked:
        return "blocked"
    if account_blocked:
        return "account blocked"
    return "active"


def describe_services(connections: Iterable[Connection], account_blocked: bool) -> tuple[str, int]:
    """One line per connection, ordered by connection id, and the count of active ones.

    The text is deterministic (sorted, no timestamps) so it fingerprints stably and diffs cleanly.
    """
    lines: list[str] = []
    active = 0
    for connection in sorted(connections, key=lambda c: c.id):
        service = connection.service
        name = (service.custom_name or service.name) if service else "?"
        kind = service.type if service else "?"
        service_id = service.id if service else "?"
        state = connection_state(connection, account_blocked)
        active += state == "active"
        flat = connection.flat.id if connection.flat else "?"
        lines.append(f"{name} [{kind} #{service_id}] flat {flat}: {state}")
    return "\n".join(lines), active


def desired_contact(account: Account, connections: Iterable[Connection] = ()) -> DesiredContact:
    """Map one account (and its connections) to the contact it should be."""
    phone = owner_phone(account)
    services, active = describe_services(connections, account.blocked)
    fields = {
        "ORIGINATOR_ID": ORIGINATOR,
        "ORIGIN_ID": str(account.id),
        F_ACCOUNT_ID: str(account.id),
        F_ACCOUNT_NUMBER: account.number or "",
        F_OWNER_ID: str(account.owner.id),
        F_PHONE: phone or "",
        F_BLOCKED: "Y" if account.blocked else "N",
        F_BLOCK_REASON: (account.block_reason or "") if account.blocked else "",
        F_COMPANY: account.company.short_name if account.company else "",
        F_SERVICES: services,
        F_SERVICES_ACTIVE: str(active),
    }
    name = f"Лицевой счёт {account.number}" if account.number else f"Абонент {account.owner.id}"
    return DesiredContact(account_id=account.id, phone=phone, fields=fields, name=name)


_TRUE = {"1", "y", "yes", "true"}


def normalise_value(field: str, value: Any) -> str:
    """The portal's value of an owned field in the mapping's string form (None and [] become "")."""
    if value is None or value == [] or (value is False and field not in BOOLEAN_FIELDS):
        return ""
    if field in BOOLEAN_FIELDS:
        return "Y" if str(value).strip().lower() in _TRUE or value is True else "N"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def same_phone(raw: Any, phone: str) -> bool:
    """Whether a stored phone row (any format) is ``phone``; rows we cannot parse never match."""
    try:
        return normalize_phone(raw) == phone
    except InvalidPhoneError:
        return False


__all__ = [
    "ORIGINATOR",
    "OWNED_FIELDS",
    "USERFIELDS",
    "DesiredContact",
    "desired_contact",
    "normalise_value",
    "owner_phone",
    "same_phone",
]
