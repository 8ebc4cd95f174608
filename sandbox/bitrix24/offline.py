"""Offline events: a durable queue on the portal that an app polls instead of receiving POSTs.

As documented (``api-reference/events/event-offline-get.md``, ``-clear.md``, ``offline-events.md``):
``event.bind`` with ``event_type=offline`` (no handler URL) makes the portal keep each such event as
a record ``{ID, TIMESTAMP_X, EVENT_NAME, EVENT_DATA, EVENT_ADDITIONAL, MESSAGE_ID}``.
``event.offline.get`` (``filter`` on ID/TIMESTAMP_X/EVENT_NAME/MESSAGE_ID with an operator before the
field name, ``order`` default ``TIMESTAMP_X:ASC``, ``limit`` default 50, ``clear`` default 1,
``process_id``, ``error``) returns ``{process_id, events}``: with ``clear=1`` the records are deleted
as they are returned (``process_id`` null); with ``clear=0`` they are marked with a process id and
handed to no other caller, until ``event.offline.clear`` (``process_id`` required; ``id`` or
``message_id`` arrays, default every record of that process) deletes them; a later get with the
same ``process_id`` returns them again. ``event.offline.error`` marks records as failed (returned
only with ``error=1``). ``event.offline.list`` reads without changing anything. App context only
(``event.*``); whether connector events may be bound offline is not documented: here they may.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from sandbox.bitrix24.state import ApiError, Context, Portal

FIELDS = ("ID", "TIMESTAMP_X", "EVENT_NAME", "MESSAGE_ID")
OPERATORS = (">=", "<=", "!=", "=", ">", "<")


def bind(portal: Portal, event: str) -> None:
    """``event.bind`` with ``event_type=offline``: keep this event in the queue from now on."""
    with portal.lock:
        if event in portal.offline_bindings:
            raise ApiError("ERROR_EVENT_HANDLER_ALREADY_EXISTS", "Handler already binded")
        portal.offline_bindings.add(event)


def record(portal: Portal, event: str, data: dict[str, Any], additional: dict[str, Any]) -> None:
    """Queue one event for the offline pollers, if it is bound offline."""
    with portal.lock:
        if event not in portal.offline_bindings:
            return
        portal.offline_events.append(
            {
                "ID": str(portal.next_id("offline_event")),
                "TIMESTAMP_X": datetime.fromtimestamp(time.time(), UTC)
                .astimezone()
                .isoformat(timespec="seconds"),
                "EVENT_NAME": event,
                "EVENT_DATA": data,
                "EVENT_ADDITIONAL": additional,
                "MESSAGE_ID": secrets.token_hex(16),
                "PROCESS_ID": None,
                "ERROR": 0,
            }
        )


def _matches(entry: dict[str, Any], filters: dict[str, Any]) -> bool:
    for raw_key, expected in filters.items():
        key = str(raw_key)
        op = next((o for o in OPERATORS if key.startswith(o)), "=")
        name = key[len(op) :] if key.startswith(op) else key
        if name not in (*FIELDS, "PROCESS_ID", "ERROR"):
            raise ApiError("ERROR_ARGUMENT", f"filter field {name!r} is not supported")
        left, right = _comparable(name, entry.get(name)), _comparable(name, expected)
        ok = {
            "=": left == right, "!=": left != right, ">": left > right,
            "<": left < right, ">=": left >= right, "<=": left <= right,
        }[op]  # fmt: skip
        if not ok:
            return False
    return True


def _comparable(name: str, value: Any) -> tuple[int, str]:
    """Numbers compare as numbers (``ID``, ``ERROR``), the rest as text."""
    return (int(value or 0), "") if name in ("ID", "ERROR") else (0, str(value))


def _ordered(entries: list[dict[str, Any]], order: Any) -> list[dict[str, Any]]:
    spec = order if isinstance(order, dict) and order else {"TIMESTAMP_X": "ASC"}
    result = sorted(entries, key=lambda e: int(e["ID"]))  # ties on TIMESTAMP_X keep insertion order
    for name, direction in reversed(list(spec.items())):
        if name not in FIELDS:
            raise ApiError("ERROR_ARGUMENT", f"order field {name!r} is not supported")
        numeric = name == "ID"
        result.sort(
            key=lambda e: int(e[name]) if numeric else str(e[name]), reverse=str(direction).upper() == "DESC"
        )
    return result


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        k: entry[k]
        for k in ("ID", "TIMESTAMP_X", "EVENT_NAME", "EVENT_DATA", "EVENT_ADDITIONAL", "MESSAGE_ID")
    }


def offline_get(portal: Portal, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    filters = params.get("filter") or {}
    limit = int(params.get("limit") or 50)
    clear = str(params.get("clear", "1")) not in ("0", "false", "N")
    with_errors = str(params.get("error", "0")) in ("1", "true", "Y")
    process_id = str(params.get("process_id") or "") or None
    with portal.lock:
        free = [
            e
            for e in portal.offline_events
            if (e["PROCESS_ID"] is None or e["PROCESS_ID"] == process_id)
            and bool(e["ERROR"]) == with_errors
            and _matches(e, filters)
        ]
        chosen = _ordered(free, params.get("order"))[: max(0, limit)]
        if clear:
            gone = {id(e) for e in chosen}
            portal.offline_events[:] = [e for e in portal.offline_events if id(e) not in gone]
            return {"process_id": None, "events": [_public(e) for e in chosen]}
        process_id = process_id or secrets.token_hex(16)
        for entry in chosen:
            entry["PROCESS_ID"] = process_id
        return {"process_id": process_id, "events": [_public(e) for e in chosen]}


def _selected(portal: Portal, params: dict[str, Any]) -> list[dict[str, Any]]:
    process_id = str(params.get("process_id") or "")
    if not process_id:
        raise ApiError("ERROR_ARGUMENT", "process_id is required")
    ids = {str(i) for i in params.get("id") or []}
    message_ids = {str(i) for i in params.get("message_id") or []}
    mine = [e for e in portal.offline_events if e["PROCESS_ID"] == process_id]
    if ids:
        return [e for e in mine if e["ID"] in ids]
    if message_ids:
        return [e for e in mine if e["MESSAGE_ID"] in message_ids]
    return mine


def offline_clear(portal: Portal, params: dict[str, Any], ctx: Context) -> bool:
    with portal.lock:
        gone = {id(e) for e in _selected(portal, params)}
        portal.offline_events[:] = [e for e in portal.offline_events if id(e) not in gone]
    return True


def offline_error(portal: Portal, params: dict[str, Any], ctx: Context) -> bool:
    with portal.lock:
        for entry in _selected(portal, {**params, "id": None}):
            entry["ERROR"] = 1
    return True


def offline_list(portal: Portal, params: dict[str, Any], ctx: Context) -> list[dict[str, Any]]:
    with portal.lock:
        found = [e for e in portal.offline_events if _matches(e, params.get("filter") or {})]
        return [
            {**_public(e), "PROCESS_ID": e["PROCESS_ID"] or "", "ERROR": str(e["ERROR"])}
            for e in _ordered(found, params.get("order") or {"ID": "ASC"})
        ]


METHODS = {
    "event.offline.get": offline_get,
    "event.offline.clear": offline_clear,
    "event.offline.error": offline_error,
    "event.offline.list": offline_list,
}

__all__ = ["METHODS", "bind", "record"]
