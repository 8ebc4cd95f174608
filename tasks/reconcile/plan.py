"""The diff between what RosDomofon says and what Bitrix24 holds: create, update, adopt, or nothing.

Rules (docs/bitrix24-api.md §6, §8):

* never delete a contact, never touch a field we do not own;
* an account with no contact of ours is first matched by phone (any stored format) against contacts
  that are not ours and ADOPTED (ORIGINATOR_ID/ORIGIN_ID and our fields set) rather than duplicated;
* phones change by row ``ID``: a number already present in any format is left alone; when the owner's
  number changed, the row holding the number we wrote last time is modified in place; only when no
  row is ours is a row added (a row without ``ID`` is always added by the portal);
* two contacts of ours with one ORIGIN_ID (a past race) are both kept; the lowest ID is the one we
  maintain, and the duplicate is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.bitrix24 import Contact, MultiField
from tasks.reconcile.mapping import (
    F_PHONE,
    ORIGINATOR,
    OWNED_FIELDS,
    PHONE_VALUE_TYPE,
    DesiredContact,
    normalise_value,
    same_phone,
)


class ObservedContact(BaseModel):
    """A contact as the portal holds it, reduced to what reconciliation owns."""

    model_config = ConfigDict(frozen=True)

    id: int
    phones: tuple[MultiField, ...] = ()
    fields: dict[str, str] = Field(default_factory=dict)

    @property
    def origin_id(self) -> str:
        return self.fields.get("ORIGIN_ID", "")

    @property
    def ours(self) -> bool:
        return self.fields.get("ORIGINATOR_ID", "") == ORIGINATOR and bool(self.origin_id)

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ObservedContact:
        contact = Contact.model_validate(raw)
        extra = {
            **(contact.model_extra or {}),
            "ORIGINATOR_ID": contact.ORIGINATOR_ID,
            "ORIGIN_ID": contact.ORIGIN_ID,
        }
        fields = {name: normalise_value(name, extra.get(name)) for name in OWNED_FIELDS}
        return cls(id=contact.ID, phones=tuple(contact.PHONE), fields=fields)

    def has_phone(self, phone: str) -> bool:
        return any(row.VALUE is not None and same_phone(row.VALUE, phone) for row in self.phones)


class WriteKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    ADOPT = "adopt"


class ContactWrite(BaseModel):
    """One planned write; ``fields`` is exactly what goes to ``crm.contact.add``/``update``."""

    kind: WriteKind
    account_id: int
    contact_id: int | None = None
    fields: dict[str, Any]
    changed: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    """What a run will do. ``unchanged`` maps account id -> contact id (confirmed equal)."""

    writes: list[ContactWrite] = Field(default_factory=list)
    unchanged: dict[int, int] = Field(default_factory=dict)
    duplicates: dict[str, list[int]] = Field(default_factory=dict)

    def of_kind(self, kind: WriteKind) -> list[ContactWrite]:
        return [w for w in self.writes if w.kind == kind]

    def counts(self) -> dict[str, int]:
        counts = {kind.value: 0 for kind in WriteKind}
        for write in self.writes:
            counts[write.kind.value] += 1
        counts["unchanged"] = len(self.unchanged)
        return counts


def phone_rows(desired: DesiredContact, observed: ObservedContact) -> list[dict[str, Any]] | None:
    """The PHONE rows to send so the owner's number is on the contact, or None when it already is."""
    if desired.phone is None or observed.has_phone(desired.phone):
        return None
    previous = observed.fields.get(F_PHONE, "")
    if previous:
        for row in observed.phones:
            if row.ID is not None and row.VALUE is not None and same_phone(row.VALUE, previous):
                return [
                    {"ID": row.ID, "VALUE": desired.phone, "VALUE_TYPE": row.VALUE_TYPE or PHONE_VALUE_TYPE}
                ]
    return [{"VALUE": desired.phone, "VALUE_TYPE": PHONE_VALUE_TYPE}]


def changed_fields(desired: DesiredContact, observed: ObservedContact) -> dict[str, Any]:
    """The owned fields (and phone rows) that differ; empty when the contact is already right."""
    changes: dict[str, Any] = {
        name: value for name, value in desired.fields.items() if observed.fields.get(name, "") != value
    }
    rows = phone_rows(desired, observed)
    if rows is not None:
        changes["PHONE"] = rows
    return changes


def pick_ours(contacts: Iterable[ObservedContact]) -> tuple[dict[str, ObservedContact], dict[str, list[int]]]:
    """Our contacts by ORIGIN_ID (lowest ID wins) and the ORIGIN_IDs held by more than one contact."""
    by_origin: dict[str, ObservedContact] = {}
    duplicates: dict[str, list[int]] = {}
    for contact in sorted(contacts, key=lambda c: c.id):
        if not contact.ours:
            continue
        if contact.origin_id in by_origin:
            duplicates.setdefault(contact.origin_id, [by_origin[contact.origin_id].id]).append(contact.id)
            continue
        by_origin[contact.origin_id] = contact
    return by_origin, duplicates


def build_plan(
    desired: Iterable[DesiredContact],
    ours: Iterable[ObservedContact],
    adoptable: Mapping[int, ObservedContact] | None = None,
) -> Plan:
    """Diff ``desired`` (the accounts to check) against our contacts and adoption candidates.

    ``adoptable`` maps account id -> a contact that is not ours but holds the account's phone.
    """
    by_origin, duplicates = pick_ours(ours)
    adoptable = adoptable or {}
    plan = Plan(duplicates=duplicates)
    for want in desired:
        have = by_origin.get(want.origin_id)
        if have is not None:
            changes = changed_fields(want, have)
            if changes:
                plan.writes.append(
                    ContactWrite(
                        kind=WriteKind.UPDATE,
                        account_id=want.account_id,
                        contact_id=have.id,
                        fields=changes,
                        changed=sorted(changes),
                    )
                )
            else:
                plan.unchanged[want.account_id] = have.id
            continue
        candidate = adoptable.get(want.account_id)
        if candidate is not None:
            changes = changed_fields(want, candidate)
            plan.writes.append(
                ContactWrite(
                    kind=WriteKind.ADOPT,
                    account_id=want.account_id,
                    contact_id=candidate.id,
                    fields=changes,
                    changed=sorted(changes),
                )
            )
            continue
        fields = want.create_fields()
        plan.writes.append(
            ContactWrite(
                kind=WriteKind.CREATE, account_id=want.account_id, fields=fields, changed=sorted(fields)
            )
        )
    return plan


def assign_adoptions(
    phones: Mapping[int, str], candidates: Iterable[ObservedContact]
) -> dict[int, ObservedContact]:
    """Give each account (id -> canonical phone) at most one not-ours contact holding that phone.

    Verified client-side (the portal's phone matching is loose); the oldest contact wins and no
    contact is given to two accounts.
    """
    free = sorted((c for c in candidates if not c.ours), key=lambda c: c.id)
    taken: set[int] = set()
    result: dict[int, ObservedContact] = {}
    for account_id, phone in sorted(phones.items()):
        for contact in free:
            if contact.id not in taken and contact.has_phone(phone):
                result[account_id] = contact
                taken.add(contact.id)
                break
    return result


__all__ = [
    "ContactWrite",
    "ObservedContact",
    "Plan",
    "WriteKind",
    "assign_adoptions",
    "build_plan",
    "changed_fields",
    "phone_rows",
    "pick_ours",
]
