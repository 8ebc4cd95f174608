"""Through a list method by the ID window (fast on big lists, the docs' advice for paging).

The ID window orders by ID, filters ``>ID`` = last seen and sends ``start=-1`` so the portal skips
COUNT(*); it stops at a page shorter than 50. ``crm.item.*`` lists name the key ``id`` and put rows
under ``items``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemas.bitrix24 import B24Envelope

PAGE_SIZE = 50


def rows_of(result: Any) -> list[dict[str, Any]]:
    if isinstance(result, Mapping):
        items = result.get("items", result.get("result"))
        return list(items) if isinstance(items, list) else []
    return list(result) if isinstance(result, list) else []


class PagingMixin:
    if TYPE_CHECKING:

        def call_raw(
            self, method: str, params: dict[str, Any] | None = None, *, write: bool | None = None
        ) -> B24Envelope: ...

    def scan_by_id(
        self,
        method: str,
        filter: Mapping[str, Any] | None = None,
        select: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield every row in ID order using the ``>ID`` window with ``start=-1``."""
        key = "id" if method.startswith("crm.item.") else "ID"
        fields = list(select or [])
        if fields and key not in fields and "*" not in fields:
            fields.append(key)
        last = 0
        while True:
            query: dict[str, Any] = {
                "order": {key: "ASC"},
                "filter": {**(filter or {}), f">{key}": last},
                "start": -1,
            }
            if fields:
                query["select"] = fields
            rows = rows_of(self.call_raw(method, query).result)
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            last = int(rows[-1][key])


__all__ = ["PAGE_SIZE", "PagingMixin", "rows_of"]
