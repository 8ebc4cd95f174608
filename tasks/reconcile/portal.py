"""Reading our contacts back from Bitrix24: only our contacts, only the fields we own.

Three reads, all inside the client's shared rate limiter:

* :meth:`PortalReader.scan_ours`: the ID-window scan (``order ID ASC``, ``>ID``, ``start=-1``) of
  ``crm.contact.list`` filtered on ``ORIGINATOR_ID``; one request per 50 contacts. Used by ``--full``
  and when the fingerprint store knows nothing (first run, lost Redis), where it is also the cheapest.
* :meth:`PortalReader.by_ids` / :meth:`PortalReader.by_origin_ids`: targeted ``crm.contact.list``
  with an ``@ID``/``@ORIGIN_ID`` filter of 50 values per command, 50 commands per ``batch``: 2,500
  contacts per request, for incremental runs where only a few accounts changed.
* :meth:`PortalReader.adoption_candidates`, for accounts with no contact of ours, the cheaper of:

  - ``crm.duplicate.findbycomm``: the portal compares digits only, so ``89131234567`` does not
    match ``79131234567``; each phone is asked in its three spellings (``7…``, ``8…``, 10 digits),
    20 values per command, 50 commands per batch (~330 phones per request), then the matches are
    read by id;
  - the ID-window scan of ALL contacts (50 per request) with phones normalised client-side, when
    the portal holds few contacts (one ``total`` count decides; an empty portal costs nothing).

  Either way the match is verified client-side with :func:`schemas.phone.normalize_phone`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from schemas.bitrix24 import BatchResult
from tasks.errors import PortalReadError
from tasks.flows.contact import phone_spellings as spellings  # the message flow asks the same three
from tasks.reconcile.mapping import ORIGINATOR, OWNED_FIELDS
from tasks.reconcile.plan import ObservedContact, assign_adoptions

SELECT: tuple[str, ...] = ("ID", "PHONE", *OWNED_FIELDS)
LIST_METHOD = "crm.contact.list"
IN_FILTER_SIZE = 50  # one page: a list command never returns more than 50 rows
FINDBYCOMM_SIZE = 20
BATCH_SIZE = 50
PAGE = 50
PHONES_PER_FINDBYCOMM_REQUEST = FINDBYCOMM_SIZE * BATCH_SIZE // 3


class PortalClient(Protocol):
    """The part of ``clients.bitrix24.Bitrix24Client`` reconciliation uses."""

    def batch(self, commands: Any, halt: bool = False) -> BatchResult: ...

    def scan_by_id(self, method: str, filter: Any = None, select: Any = None) -> Any: ...


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _rows(result: Any) -> list[Mapping[str, Any]]:
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

    def scan_all(self) -> list[ObservedContact]:
        """Every contact of the portal (ours and not), only the fields we compare."""
        return [
            ObservedContact.from_wire(row) for row in self.client.scan_by_id(LIST_METHOD, select=list(SELECT))
        ]

    def count_all(self) -> int:
        """How many contacts the portal holds (one request; the portal runs COUNT(*))."""
        outcome = self.client.batch({"n": (LIST_METHOD, {"select": ["ID"], "start": 0})})
        return int(outcome.totals.get("n", len(_rows(outcome.results.get("n")))))

    def find_by_phones(self, phones: Iterable[str]) -> set[int]:
        """Ids of contacts the portal matches to any of ``phones`` (canonical form), in every spelling."""
        values = sorted({v for phone in phones for v in spellings(phone)})
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

    def adoption_candidates(self, phones: Mapping[int, str]) -> tuple[dict[int, ObservedContact], str]:
        """For accounts (id -> canonical phone) without a contact of ours: a not-ours contact to adopt.

        Returns the assignment and the way it was looked up (for the report).
        """
        if not phones:
            return {}, "none"
        lookups = math.ceil(len(phones) / PHONES_PER_FINDBYCOMM_REQUEST)
        if lookups > 1:  # more than one findbycomm request (+1 to read matches): is scanning cheaper?
            total = self.count_all()
            if total // PAGE + 1 <= lookups + 1:
                return (assign_adoptions(phones, self.scan_all()) if total else {}), "scan-all"
        ids = self.find_by_phones(phones.values())
        if not ids:
            return {}, "findbycomm"
        return assign_adoptions(phones, self.by_ids(ids)), "findbycomm"


__all__ = ["SELECT", "PortalClient", "PortalReader"]
