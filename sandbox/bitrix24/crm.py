"""``crm.contact.*``, ``crm.duplicate.findbycomm``, contact userfields and timeline comments.

Behaviour follows the facts doc §6: ids as strings, multifields only when named in ``select``, rows
without ``ID`` added on update, a PHONE filter that is a prefix LIKE on the raw stored string using
only the first value, and findbycomm comparing digits with the extension stripped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sandbox.bitrix24.state import ApiError, Context, ListResult, Portal

PAGE = 50
MULTI = ("PHONE", "EMAIL", "WEB", "IM")
STANDARD = (
    "NAME",
    "LAST_NAME",
    "SECOND_NAME",
    "POST",
    "HONORIFIC",
    "BIRTHDATE",
    "COMMENTS",
    "SOURCE_ID",
    "SOURCE_DESCRIPTION",
    "OPENED",
    "EXPORT",
    "ASSIGNED_BY_ID",
    "TYPE_ID",
    "COMPANY_ID",
    "ORIGINATOR_ID",
    "ORIGIN_ID",
    "ORIGIN_VERSION",
)
READ_ONLY = ("ID", "DATE_CREATE", "DATE_MODIFY", "CREATED_BY_ID", "MODIFY_BY_ID")
_FILTER_KEY = re.compile(r"^(>=|<=|!@|=%|%=|!=|>|<|@|%|=|!)?(.+)$")
_EXTENSION = re.compile(r"(?i)\s*(ext\.?|доб\.?|#|x)\s*\d+\s*$")


def _now() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


def _fields(params: dict[str, Any]) -> dict[str, Any]:
    fields = params.get("fields")
    if not isinstance(fields, dict):
        raise ApiError("", "Parameter 'fields' must be array.")
    return fields


def _contact_id(portal: Portal, params: dict[str, Any]) -> int:
    raw: Any = params.get("id", params.get("ID"))
    try:
        contact_id = int(raw)
    except (TypeError, ValueError):
        raise ApiError("", "ID is not defined or invalid.") from None
    if contact_id <= 0:
        raise ApiError("", "ID is not defined or invalid.")
    if contact_id not in portal.contacts:
        raise ApiError("", "Not found")
    return contact_id


def _rows_for(portal: Portal, kind: str, rows: Any) -> list[dict[str, str]]:
    out = []
    for row in rows if isinstance(rows, list) else list((rows or {}).values()):
        if not isinstance(row, dict) or not str(row.get("VALUE", "")).strip():
            continue
        out.append(
            {
                "ID": str(portal.next_id("multifield")),
                "VALUE_TYPE": str(row.get("VALUE_TYPE") or ("WORK" if kind != "IM" else "OTHER")),
                "VALUE": str(row["VALUE"]),
                "TYPE_ID": kind,
            }
        )
    return out


def _accept(portal: Portal, record: dict[str, Any], fields: dict[str, Any]) -> None:
    """Copy writable fields; unknown fields are ignored silently, as the portal does."""
    for key, value in fields.items():
        upper = key.upper()
        if upper in STANDARD or upper in portal.userfields:
            record[upper] = "" if value is None else value if isinstance(value, list | dict) else str(value)


def contact_add(portal: Portal, params: dict[str, Any], ctx: Context) -> int:
    fields = _fields(params)
    emails = fields.get("EMAIL") or []
    for row in emails if isinstance(emails, list) else []:
        if isinstance(row, dict) and row.get("VALUE") and "@" not in str(row["VALUE"]):
            raise ApiError("ERROR_CORE", f"Invalid e-mail: {row['VALUE']}")
    with portal.lock:
        contact_id = portal.next_id("contact")
        now = _now()
        record: dict[str, Any] = {
            "ID": str(contact_id),
            "OPENED": "Y",
            "ASSIGNED_BY_ID": str(ctx.user_id),
            "TYPE_ID": "CLIENT",
            "CREATED_BY_ID": str(ctx.user_id),
            "MODIFY_BY_ID": str(ctx.user_id),
            "DATE_CREATE": now,
            "DATE_MODIFY": now,
            "HAS_PHONE": "N",
            "HAS_EMAIL": "N",
        }
        _accept(portal, record, fields)
        for kind in MULTI:
            record[kind] = _rows_for(portal, kind, fields.get(kind))
        _flags(record)
        portal.contacts[contact_id] = record
        return contact_id


def _flags(record: dict[str, Any]) -> None:
    record["HAS_PHONE"] = "Y" if record["PHONE"] else "N"
    record["HAS_EMAIL"] = "Y" if record["EMAIL"] else "N"


def contact_update(portal: Portal, params: dict[str, Any], ctx: Context) -> bool:
    with portal.lock:
        contact_id = _contact_id(portal, params)
        fields = _fields(params)
        record = portal.contacts[contact_id]
        _accept(portal, record, fields)
        for kind in MULTI:
            if kind in fields:
                _update_multi(portal, record, kind, fields[kind])
        _flags(record)
        record["DATE_MODIFY"] = _now()
        record["MODIFY_BY_ID"] = str(ctx.user_id)
        return True


def _update_multi(portal: Portal, record: dict[str, Any], kind: str, rows: Any) -> None:
    current: list[dict[str, str]] = record[kind]
    items = rows if isinstance(rows, list) else list((rows or {}).values())
    for row in items:
        if not isinstance(row, dict):
            continue
        row_id = str(row.get("ID") or "")
        if not row_id:
            current.extend(_rows_for(portal, kind, [row]))  # a row without ID is always ADDED
            continue
        target = next((r for r in current if r["ID"] == row_id), None)
        if target is None:
            continue
        value = row.get("VALUE")
        if row.get("DELETE") == "Y" or value is None or str(value) == "":
            current.remove(target)
            continue
        target["VALUE"] = str(value)
        if row.get("VALUE_TYPE"):
            target["VALUE_TYPE"] = str(row["VALUE_TYPE"])


def contact_get(portal: Portal, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    with portal.lock:
        record = portal.contacts[_contact_id(portal, params)]
        return _copy(record)


def contact_delete(portal: Portal, params: dict[str, Any], ctx: Context) -> bool:
    with portal.lock:
        del portal.contacts[_contact_id(portal, params)]
        return True


def _copy(record: dict[str, Any]) -> dict[str, Any]:
    return {k: ([dict(r) for r in v] if k in MULTI else v) for k, v in record.items()}


def _project(portal: Portal, record: dict[str, Any], select: list[str]) -> dict[str, Any]:
    names: list[str] = []
    if not select or "*" in select:
        names.extend(k for k in record if k not in MULTI and not k.startswith("UF_"))
    if "UF_*" in select:
        names.extend(k for k in portal.userfields)
    names.extend(s.upper() for s in select if s not in ("*", "UF_*"))
    out: dict[str, Any] = {}
    for name in dict.fromkeys(names):
        if name in MULTI:
            out[name] = [dict(r) for r in record.get(name, [])]
        elif name in record or name in portal.userfields:
            out[name] = record.get(name)
    out["ID"] = record["ID"]
    return out


def _like(pattern: str, text: str) -> bool:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, text, flags=re.IGNORECASE | re.DOTALL) is not None


def _cmp_values(a: Any, b: Any) -> tuple[Any, Any]:
    try:
        return float(a), float(b)
    except (TypeError, ValueError):
        return str(a or ""), str(b or "")


def _matches(record: dict[str, Any], key: str, value: Any) -> bool:
    match = _FILTER_KEY.match(key)
    op, field = (match.group(1) or "", match.group(2).upper()) if match else ("", key.upper())
    if field in MULTI:
        first = value[0] if isinstance(value, list) and value else value
        if isinstance(first, list | dict) or first is None:
            return False
        needle = str(first).strip()
        hit = any(_like(needle + "%", r["VALUE"]) for r in record.get(field, []))
        return not hit if op.startswith("!") else hit
    current = record.get(field)
    if op in ("@", "!@"):
        options = value if isinstance(value, list) else [value]
        found = any(_cmp_values(current, o)[0] == _cmp_values(current, o)[1] for o in options)
        return found if op == "@" else not found
    if op in ("%", "=%", "%="):
        pattern = {"%": f"%{value}%", "=%": str(value), "%=": str(value)}[op]
        return _like(pattern, str(current or ""))
    left, right = _cmp_values(current, value)
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op in ("!", "!="):
        return left != right
    return left == right


def contact_list(portal: Portal, params: dict[str, Any], ctx: Context) -> ListResult:
    filt = params.get("filter") or {}
    if not isinstance(filt, dict):
        raise ApiError("", "Parameter 'filter' must be array.")
    select = params.get("select") or []
    select = select if isinstance(select, list) else [select]
    order = params.get("order") or {"ID": "ASC"}
    with portal.lock:
        rows = [r for r in portal.contacts.values() if all(_matches(r, k, v) for k, v in filt.items())]
        for field, direction in reversed(list(order.items()) if isinstance(order, dict) else []):
            desc = str(direction).upper() == "DESC"
            rows.sort(key=_sorter(field.upper()), reverse=desc)
        projected = [_project(portal, r, select) for r in rows]
    return page(projected, params.get("start"))


def _sorter(field: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    return lambda record: _sort_key(record.get(field))


def _sort_key(value: Any) -> tuple[int, Any]:
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value or ""))


def page(rows: list[Any], start: Any) -> ListResult:
    """50-row pages; ``start=-1`` is a plain top-50 with ``total: 0`` and no ``next``."""
    try:
        begin = int(start or 0)
    except (TypeError, ValueError):
        begin = 0
    if begin == -1:
        return ListResult(rows[:PAGE], 0, None)
    offset = max(0, begin) // PAGE * PAGE  # old-style lists map start to page floor(start/50)+1
    chunk = rows[offset : offset + PAGE]
    nxt = offset + PAGE if offset + PAGE < len(rows) else None
    return ListResult(chunk, len(rows), nxt)


def normalize_phone(value: str) -> str:
    """The portal's duplicate-index form: extension stripped, digits only."""
    return re.sub(r"\D", "", _EXTENSION.sub("", str(value)))


def findbycomm(portal: Portal, params: dict[str, Any], ctx: Context) -> Any:
    kind = str(params.get("type") or "").upper()
    if not kind:
        raise ApiError("", "Communication type is not defined")
    if kind not in ("PHONE", "EMAIL"):
        raise ApiError("", f"Communication type '{kind}' is not supported in current context")
    values = params.get("values")
    if isinstance(values, dict):
        values = list(values.values())
    if not isinstance(values, list) or not values:
        raise ApiError("", "Communication values is not defined")
    if len(values) > 20:
        raise ApiError("", "Too many communication values (20 at most)")
    entity = params.get("entity_type")
    types = [str(entity).upper()] if entity else ["LEAD", "CONTACT", "COMPANY"]
    if any(t not in ("LEAD", "CONTACT", "COMPANY") for t in types):
        raise ApiError("", f"Entity type '{entity}' is not supported in current context")
    norm = normalize_phone if kind == "PHONE" else (lambda v: str(v).strip().lower())
    wanted = {norm(v) for v in values if norm(v)}
    result: dict[str, list[int]] = {}
    if "CONTACT" in types:
        with portal.lock:
            ids = [
                cid
                for cid, rec in portal.contacts.items()
                if any(norm(r["VALUE"]) in wanted for r in rec[kind])
            ]
        if ids:
            result["CONTACT"] = sorted(ids)
    return result or []


def _uf_name(raw: Any) -> str:
    name = str(raw or "").upper()
    if name.startswith("UF_CRM_"):
        full = name
    elif name.startswith("UF_"):
        full = "UF_CRM_" + name[3:]
    else:
        full = "UF_CRM_" + name
    if not name or len(full) > 50 or not re.fullmatch(r"UF_CRM_[A-Z0-9_]+", full):
        raise ApiError("ERROR_CORE", f"Invalid field name: {raw}")
    return full


def userfield_add(portal: Portal, params: dict[str, Any], ctx: Context) -> int:
    fields = _fields(params)
    if not fields.get("USER_TYPE_ID"):
        raise ApiError("ERROR_CORE", "USER_TYPE_ID is required")
    name = _uf_name(fields.get("FIELD_NAME"))
    with portal.lock:
        if name in portal.userfields:
            raise ApiError("ERROR_CORE", f"Field {name} already exists")
        field_id = portal.next_id("userfield")
        portal.userfields[name] = {
            **{k: v for k, v in fields.items() if k not in ("FIELD_NAME",)},
            "ID": str(field_id),
            "ENTITY_ID": "CRM_CONTACT",
            "FIELD_NAME": name,
        }
        return field_id


def userfield_list(portal: Portal, params: dict[str, Any], ctx: Context) -> list[dict[str, Any]]:
    filt = params.get("filter") or {}
    with portal.lock:
        rows = [dict(f) for f in portal.userfields.values()]
    return [r for r in rows if all(str(r.get(k)) == str(v) for k, v in filt.items())]


def timeline_comment_add(portal: Portal, params: dict[str, Any], ctx: Context) -> int:
    fields = params.get("fields")
    if not isinstance(fields, dict):
        raise ApiError("INVALID_ARG_VALUE", "Parameter 'fields' is required (lowercase key)")
    if str(fields.get("ENTITY_TYPE", "")).lower() != "contact":
        raise ApiError("INVALID_ARG_VALUE", "ENTITY_TYPE must be 'contact' in this simulator")
    if not str(fields.get("COMMENT") or "").strip():
        raise ApiError("INVALID_ARG_VALUE", "COMMENT is empty")
    with portal.lock:
        try:
            owner = int(fields.get("ENTITY_ID"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            owner = 0
        if owner not in portal.contacts:
            raise ApiError("OWNER_NOT_FOUND", "Owner not found")
        comment_id = portal.next_id("comment")
        portal.timeline.append(
            {
                "ID": comment_id,
                "ENTITY_TYPE": "contact",
                "ENTITY_ID": owner,
                "COMMENT": str(fields["COMMENT"]),
                "AUTHOR_ID": ctx.user_id,
                "CREATED": _now(),
            }
        )
        return comment_id


METHODS = {
    "crm.contact.add": contact_add,
    "crm.contact.update": contact_update,
    "crm.contact.get": contact_get,
    "crm.contact.delete": contact_delete,
    "crm.contact.list": contact_list,
    "crm.duplicate.findbycomm": findbycomm,
    "crm.contact.userfield.add": userfield_add,
    "crm.contact.userfield.list": userfield_list,
    "crm.timeline.comment.add": timeline_comment_add,
}
