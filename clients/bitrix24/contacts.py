"""CRM contact helpers: lookup by phone, reads, creates and multifield-safe updates.

Phones are written and compared in the one canonical form of :mod:`schemas.phone`. Bitrix24 has no
uniqueness constraint and no idempotency key, so :meth:`ContactsMixin.create_contact_once` looks the
phone up before creating and again after an ambiguous failure, under a per-phone Redis lock when the
client has Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from loguru import logger

from clients.bitrix24.errors import Bitrix24AmbiguousWriteError, Bitrix24InputError, Bitrix24ServerError
from schemas.bitrix24 import Contact, MultiField
from schemas.phone import InvalidPhoneError, normalize_phone

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

    from clients.bitrix24.config import Bitrix24Config
    from schemas.bitrix24 import B24Envelope, BatchResult

FINDBYCOMM_LIMIT = 20
MULTIFIELDS = ("PHONE", "EMAIL", "WEB", "IM")


def _canonical(kind: str, value: str | None) -> str:
    if not value:
        return ""
    if kind == "PHONE":
        try:
            return normalize_phone(value)
        except InvalidPhoneError:
            return "".join(ch for ch in value if ch.isdigit())
    return value.strip().lower()


def _normalise_phone_rows(rows: Iterable[Mapping[str, Any] | MultiField]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        data = row.to_wire() if isinstance(row, MultiField) else dict(row)
        if data.get("VALUE"):
            try:
                data["VALUE"] = normalize_phone(data["VALUE"])
            except InvalidPhoneError as exc:
                raise Bitrix24InputError(f"contact field PHONE: {exc}") from None
        if "ID" not in data:
            data.setdefault("VALUE_TYPE", "MOBILE")
        out.append(data)
    return out


def plan_multifield(
    kind: str, current: Sequence[MultiField], wanted: Iterable[Mapping[str, Any]]
) -> list[dict]:
    """Rows to send so ``wanted`` holds without re-adding a value that already has a row.

    Rows with ``ID`` pass through (modify/delete); a row without ``ID`` whose value already exists
    becomes a modification of that row (only if its VALUE_TYPE differs) or is dropped.
    """
    existing = {_canonical(kind, row.VALUE): row for row in current if row.ID is not None}
    plan: list[dict] = []
    seen: set[str] = set()
    for row in wanted:
        if row.get("ID") is not None:
            plan.append(dict(row))
            continue
        key = _canonical(kind, row.get("VALUE"))
        if not key or key in seen:
            continue
        seen.add(key)
        match = existing.get(key)
        if match is None:
            plan.append(dict(row))
        elif row.get("VALUE_TYPE") and row.get("VALUE_TYPE") != match.VALUE_TYPE:
            plan.append({"ID": match.ID, "VALUE": match.VALUE, "VALUE_TYPE": row["VALUE_TYPE"]})
    return plan


class ContactsMixin:
    _redis: redis.Redis | None
    config: Bitrix24Config

    if TYPE_CHECKING:

        def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...

        def call_raw(
            self, method: str, params: dict[str, Any] | None = None, *, write: bool | None = None
        ) -> B24Envelope: ...

        def batch(self, commands: Any, halt: bool = False) -> BatchResult: ...

        def scan_by_id(self, method: str, filter: Any = None, select: Any = None) -> Iterator[dict]: ...

    def find_contacts_by_phone(self, phones: Iterable[Any]) -> dict[str, list[int]]:
        """Map each canonical phone to the ids of contacts holding it (``[]`` when none).

        ``crm.duplicate.findbycomm`` takes 20 values and answers with ids only, so chunks of 20 go in
        one batch and, for chunks of several phones, the matched contacts' PHONE rows say which phone
        each id belongs to.
        """
        wanted = list(dict.fromkeys(normalize_phone(p) for p in phones))
        found: dict[str, list[int]] = {p: [] for p in wanted}
        if not wanted:
            return found
        chunks = [wanted[i : i + FINDBYCOMM_LIMIT] for i in range(0, len(wanted), FINDBYCOMM_LIMIT)]
        commands = {
            str(i): ("crm.duplicate.findbycomm", {"type": "PHONE", "values": chunk, "entity_type": "CONTACT"})
            for i, chunk in enumerate(chunks)
        }
        outcome = self.batch(commands)
        if outcome.errors:
            first = next(iter(outcome.errors.values()))
            raise Bitrix24InputError(
                f"crm.duplicate.findbycomm: {first.error} {first.error_description}".strip()
            )
        to_resolve: set[int] = set()
        for i, chunk in enumerate(chunks):
            ids = _ids(outcome.results.get(str(i)))
            if len(chunk) == 1:
                found[chunk[0]] = sorted(ids)
            else:
                to_resolve.update(ids)
        if to_resolve:
            for contact in self.get_contacts(sorted(to_resolve)):
                for row in contact.PHONE:
                    key = _canonical("PHONE", row.VALUE)
                    if key in found and contact.ID not in found[key]:
                        found[key].append(contact.ID)
        return {k: sorted(v) for k, v in found.items()}

    def get_contact(self, contact_id: int) -> Contact:
        return Contact.model_validate(self.call("crm.contact.get", {"id": int(contact_id)}))

    def get_contacts(self, ids: Iterable[int]) -> list[Contact]:
        """Contacts in the order asked; ids that do not exist are left out."""
        order = list(dict.fromkeys(int(i) for i in ids))
        outcome = self.batch({str(i): ("crm.contact.get", {"id": i}) for i in order})
        return [Contact.model_validate(outcome.results[str(i)]) for i in order if str(i) in outcome.results]

    def create_contact(self, fields: Mapping[str, Any]) -> int:
        """Create a contact (phones normalised) and return its id. Never retried: see create_contact_once."""
        body = dict(fields)
        if "PHONE" in body:
            body["PHONE"] = _normalise_phone_rows(body["PHONE"])
        contact_id = int(
            self.call("crm.contact.add", {"fields": body, "params": {"REGISTER_SONET_EVENT": "N"}})
        )
        logger.info("bitrix24 contact {} created", contact_id)
        return contact_id

    def create_contact_once(
        self, phone: Any, fields: Mapping[str, Any], *, lock_timeout: float = 60.0
    ) -> int:
        """Return the id of the contact holding ``phone``, creating it only if none exists.

        After an ambiguous failure (timeout or 5xx) the phone is looked up again: if the write
        committed, its id is returned; otherwise the error propagates and the caller may retry.
        """
        canonical = normalize_phone(phone)
        lock = (
            self._redis.lock(self.config.redis_keys.contact_create_lock(canonical), timeout=lock_timeout)
            if self._redis
            else None
        )
        if lock is not None and not lock.acquire(blocking=True, blocking_timeout=lock_timeout):
            raise Bitrix24ServerError(
                "another worker is still creating the contact for this phone", method="crm.contact.add"
            )
        try:
            existing = self.find_contacts_by_phone([canonical])[canonical]
            if existing:
                return existing[0]
            body = dict(fields)
            body.setdefault("PHONE", [{"VALUE": canonical, "VALUE_TYPE": "MOBILE"}])
            try:
                return self.create_contact(body)
            except Bitrix24AmbiguousWriteError:
                committed = self.find_contacts_by_phone([canonical])[canonical]
                if committed:
                    logger.info("bitrix24 contact for a phone committed despite an ambiguous answer")
                    return committed[0]
                raise
        finally:
            if lock is not None and lock.owned():
                lock.release()

    def update_contact(self, contact_id: int, fields: Mapping[str, Any]) -> bool:
        """Update only the given fields; multifield rows are matched by value so none is duplicated."""
        body = dict(fields)
        kinds = [k for k in MULTIFIELDS if k in body]
        if kinds:
            current = self.get_contact(contact_id)
            for kind in kinds:
                rows = _normalise_phone_rows(body[kind]) if kind == "PHONE" else [dict(r) for r in body[kind]]
                planned = plan_multifield(kind, getattr(current, kind), rows)
                if planned:
                    body[kind] = planned
                else:
                    del body[kind]
        if not body:
            return True
        return bool(self.call("crm.contact.update", {"id": int(contact_id), "fields": body}))

    def add_timeline_comment(self, contact_id: int, text: str) -> int:
        fields = {"ENTITY_ID": int(contact_id), "ENTITY_TYPE": "contact", "COMMENT": text}
        return int(self.call("crm.timeline.comment.add", {"fields": fields}))


def _ids(result: Any) -> list[int]:
    if isinstance(result, Mapping):
        return [int(i) for i in result.get("CONTACT", [])]
    return []


__all__ = ["ContactsMixin", "plan_multifield"]
