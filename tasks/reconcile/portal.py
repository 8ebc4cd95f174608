"""Reading our contacts back from Bitrix24: only our contacts, only the fields we own.

Three reads, all inside the client's shared rate limiter:

* :meth:`PortalReader.scan_ours`: the ID-window scan (``order ID ASC``, ``>ID``, ``start=-1``) of
  ``crm.contact.list`` filtered on ``ORIGINATOR_ID``; one request per 50 contacts. Used by ``--full``
  and when the fingerprint store knows nothing (first run, lost Redis), where it is also the cheapest.
* :meth:`PortalReader.by_ids` / :meth:`PortalReader.by_origin_ids`: targeted ``crm.contact.list``
  with an ``@ID``/``@ORIGIN_ID`` filter of 50 values per command, 50 commands per ``batch``: 2,500
  contacts per request, for incremental runs where only a few accounts changed.
* :meth:`PortalReader.adoption_candidates`: ``crm.duplicate.findbycomm`` (20 phones per command,
  50 commands per batch) for accounts with no contact of ours, then the matches by id, verified
  client-side (the portal's phone matching is loose).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from schemas.bitrix24 import BatchResult
from tasks.reconcile.mapping import ORIGINATOR, OWNED_FIELDS
from tasks.reconcile.plan import ObservedContact, assign_adoptions

SELECT: tuple[str, ...] = ("ID", "PHONE", *OWNED_FIELDS)
LIST_METHOD = "crm.contact.list"
IN_FILTER_SIZE = 50  # one page: a list command never returns more than 50 rows
FINDBYCOMM_SIZE = 20
BATCH_SIZE = 50


class PortalClient(Protocol):
    """The part of ``clients.bitrix24.Bitrix24Client`` reconciliation uses."""

    def batch(self, commands: Any, halt: bool = False) -> BatchResult: ...

    def scan_by_id(self, method: str, filter: Any = None, select: Any = None) -> Any: ...


class PortalReadError(RuntimeError):
    """A read command inside a batch failed; the message names the command and the portal's error."""


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _rows(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, Mapping):
        result = result.get("items", [])
    return [row for row in result if isinstance(row, Mapping)] if isinstance(result, list) else []


class PortalReader:
    def __init__(self, client: PortalClient) -> None:
        self.client = client

    def scan_ours(self) -> list[ObservedContact]:
        rows = self.client.scan_by_id(LIST_METHOD, filter={"ORIGINATOR_ID": ORIGINATOR}, select=list(SELECT))
        return [ObservedContact.from_wire(row) for row in rows]

    def _list_in(self, key: str, values: Sequence[Any], extra: Mapping[str, Any]) -> list[ObservedContact]:
        commands: dict[str, tuple[str, dict[str, Any]]] = {}
        for n, chunk in enumerate(_chunks(list(values), IN_FILTER_SIZE)):
            query = {
                "order": {"ID": "ASC"},
                "filter": {**extra, f"@{key}": list(chunk)},
                "select": list(SELECT),
                "start": -1,
            }
            commands[f"l{n}"] = (LIST_METHOD, query)
        found: list[ObservedContact] = []
        for batch in _chunks(list(commands.items()), BATCH_SIZE):
            outcome = self.client.batch(dict(batch))
            if outcome.errors:
                cid, error = next(iter(outcome.errors.items()))
                raise PortalReadError(f"{LIST_METHOD} {cid}: {error.error} {error.error_description}".strip())
            for result in outcome.results.values():
                found.extend(ObservedContact.from_wire(row) for row in _rows(result))
        return found

    def by_ids(self, contact_ids: Iterable[int]) -> list[ObservedContact]:
        ids = sorted(set(contact_ids))
        return self._list_in("ID", ids, {}) if ids else []

    def by_origin_ids(self, account_ids: Iterable[int]) -> list[ObservedContact]:
        ids = [str(a) for a in sorted(set(account_ids))]
        return self._list_in("ORIGIN_ID", ids, {"ORIGINATOR_ID": ORIGINATOR}) if ids else []

    def find_by_phones(self, phones: Iterable[str]) -> set[int]:
        """Ids of contacts the portal matches to any of ``phones`` (canonical form)."""
        values = sorted(set(phones))
        commands = {
            f"f{n}": (
                "crm.duplicate.findbycomm",
                {"type": "PHONE", "entity_type": "CONTACT", "values": list(chunk)},
            )
            for n, chunk in enumerate(_chunks(values, FINDBYCOMM_SIZE))
        }
        ids: set[int] = set()
        for batch in _chunks(list(commands.items()), BATCH_SIZE):
            outcome = self.client.batch(dict(batch))
            if outcome.errors:
                cid, error = next(iter(outcome.errors.items()))
                raise PortalReadError(f"findbycomm {cid}: {error.error} {error.error_description}".strip())
            for result in outcome.results.values():
                if isinstance(result, Mapping):
                    ids.update(int(i) for i in result.get("CONTACT", []) or [])
        return ids

    def adoption_candidates(self, phones: Mapping[int, str]) -> dict[int, ObservedContact]:
        """For accounts (id -> canonical phone) without a contact of ours: a not-ours contact to adopt."""
        if not phones:
            return {}
        ids = self.find_by_phones(phones.values())
        if not ids:
            return {}
        return assign_adoptions(phones, self.by_ids(ids))


__all__ = ["SELECT", "PortalClient", "PortalReadError", "PortalReader"]
