"""Chats: ``im.chat.add``/``im.chat.get``/``im.message.add``/``im.dialog.messages.get``, the Open Lines
connector (``imconnector.*``), ``imopenlines.config.list.get``, ``imopenlines.crm.chat.get`` and
``event.bind``. ``imconnector.*`` and ``event.*`` are app-only.

The CRM tracker is modelled for contacts only: a new connector dialog whose ``user.phone`` matches an
existing contact's phone is linked to that contact (a real line may instead create a lead or company,
depending on its settings; then ``imopenlines.crm.chat.get`` for the contact finds nothing).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from sandbox.bitrix24.crm import normalize_phone
from sandbox.bitrix24.state import ApiError, Context, Portal

APP_ONLY_PREFIXES = ("imconnector.", "event.", "placement.")


def _new_chat(portal: Portal, **fields: Any) -> int:
    chat_id = portal.next_id("chat")
    portal.chats[chat_id] = {"ID": chat_id, "messages": [], **fields}
    return chat_id


def _add_message(portal: Portal, chat_id: int, author_id: int, text: str, **extra: Any) -> dict[str, Any]:
    message = {
        "id": portal.next_id("message"),
        "chat_id": chat_id,
        "author_id": author_id,
        "text": text,
        "date": int(time.time()),
        **extra,
    }
    portal.chats[chat_id]["messages"].append(message)
    return message


def chat_add(portal: Portal, params: dict[str, Any], ctx: Context) -> int:
    users = params.get("USERS") or []
    users = [int(u) for u in (users if isinstance(users, list) else [users])]
    entity_type = params.get("ENTITY_TYPE")
    entity_id = params.get("ENTITY_ID")
    if entity_type and str(entity_type).upper() == "CRM" and entity_id:
        match = re.fullmatch(r"(CONTACT|LEAD|COMPANY|DEAL)\|(\d+)", str(entity_id))
        if match is None:
            raise ApiError("ENTITY_ID_ERROR", f"ENTITY_ID {entity_id!r} must look like CONTACT|<id>")
    with portal.lock:
        chat_id = _new_chat(
            portal,
            TYPE=str(params.get("TYPE") or "CHAT").upper(),
            TITLE=str(params.get("TITLE") or ""),
            DESCRIPTION=str(params.get("DESCRIPTION") or ""),
            OWNER=ctx.user_id,
            USERS=sorted({ctx.user_id, *users}),
            ENTITY_TYPE=entity_type,
            ENTITY_ID=entity_id,
            openline=None,
        )
        if params.get("MESSAGE"):
            _add_message(portal, chat_id, ctx.user_id, str(params["MESSAGE"]))
        return chat_id


def message_add(portal: Portal, params: dict[str, Any], ctx: Context) -> int:
    dialog = str(params.get("DIALOG_ID") or "")
    text = str(params.get("MESSAGE") or "")
    if not text.strip() and not params.get("ATTACH"):
        raise ApiError("MESSAGE_EMPTY", "Message can't be empty")
    match = re.fullmatch(r"chat(\d+)", dialog)
    if not dialog:
        raise ApiError("USER_ID_EMPTY", "Dialog ID can't be empty")
    with portal.lock:
        if match is None:
            raise ApiError("CHAT_ID", f"Dialog {dialog!r} is not a chat in this simulator")
        chat_id = int(match.group(1))
        if chat_id not in portal.chats:
            raise ApiError("CHAT_ID", "Chat not found")
        return _add_message(portal, chat_id, ctx.user_id, text, attach=params.get("ATTACH"))["id"]


def chat_get(portal: Portal, params: dict[str, Any], ctx: Context) -> dict[str, int] | None:
    """The chat bound to ``ENTITY_TYPE`` + ``ENTITY_ID`` (exact pair), else a ``null`` result.

    The portal never errors here: missing or malformed parameters and "no such chat" all answer
    ``{"result": null}`` [D api-reference/chats/im-chat-get.md; SRC im rest.php chatGet].
    """
    params = {str(k).upper(): v for k, v in params.items()}  # the portal upper-cases keys
    entity_type = params.get("ENTITY_TYPE")
    entity_id = params.get("ENTITY_ID")
    if not entity_type or not entity_id:
        return None
    wanted = (str(entity_type), str(entity_id))
    with portal.lock:
        for chat_id in sorted(portal.chats):
            chat = portal.chats[chat_id]
            if (str(chat.get("ENTITY_TYPE")), str(chat.get("ENTITY_ID"))) == wanted:
                return {"ID": chat_id}
    return None


DEFAULT_MESSAGES = 20
MAX_MESSAGES = 50
_DIALOG_ID = re.compile(r"chat(\d+)|sg(\d+)|\d+")


def _atom(ts: float) -> str:
    """Message dates go out in ATOM format with the portal's offset (``2018-01-29T16:58:47+02:00``)."""
    return datetime.fromtimestamp(ts, UTC).astimezone().isoformat(timespec="seconds")


def _id_param(params: dict[str, Any], key: str) -> int | None:
    if key not in params or params[key] is None:
        return None
    raw = str(params[key])
    if not raw.isdigit():
        name = key.split("_")[0].title()
        raise ApiError(f"{key}_STRING", f"{name} ID can't be string")
    return int(raw)


def _limit(params: dict[str, Any]) -> int:
    """``LIMIT`` as the portal reads it: 20 by default, capped at 50; zero or less means no limit."""
    if params.get("LIMIT") in (None, ""):
        return DEFAULT_MESSAGES
    try:
        return min(int(params["LIMIT"]), MAX_MESSAGES)
    except (TypeError, ValueError):
        return 0  # PHP intval("abc") is 0


def _has_access(chat: dict[str, Any], user_id: int) -> bool:
    """Members see a chat; an Open Lines chat is also open to the line's operators (portal users)."""
    return user_id in chat.get("USERS", []) or user_id == chat.get("OWNER") or bool(chat.get("openline"))


def _message_row(message: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if message.get("attach"):
        attach = message["attach"]
        params["ATTACH"] = attach if isinstance(attach, list) else [attach]
    if message.get("connector_mid"):
        params["CONNECTOR_MID"] = list(message["connector_mid"])
    return {
        "id": message["id"],
        "chat_id": message["chat_id"],
        "author_id": message["author_id"],
        "date": _atom(message["date"]),
        "text": message["text"],
        "params": params or None,
    }


def _user_row(portal: Portal, user_id: int) -> dict[str, Any]:
    """A minimal user object for a message author (portal employee or Open Lines client)."""
    external = next((k for k, v in portal.external_users.items() if v == user_id), None)
    name = f"Connector user {external[1]}" if external else f"User {user_id}"
    return {
        "id": user_id,
        "name": name,
        "first_name": name.split()[0],
        "last_name": " ".join(name.split()[1:]),
        "work_position": "",
        "color": "#df532d",
        "avatar": "",
        "gender": "M",
        "birthday": "",
        "extranet": False,
        "network": False,
        "bot": False,
        "connector": external is not None,
        "external_auth_id": "imconnector" if external else "default",
        "status": "online",
        "idle": False,
        "last_activity_date": False,
        "mobile_last_date": False,
        "absent": False,
    }


def dialog_messages_get(portal: Portal, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A window of a chat's messages, newest first (or oldest first after ``FIRST_ID``).

    No ``total``/``next``: the method pages by message id, not by ``start``
    [D api-reference/chats/messages/im-dialog-messages-get.md; SRC im rest.php dialogMessagesGet and
    Im\\Chat::getMessages]. Without ``FIRST_ID``/``LAST_ID`` the newest ``LIMIT`` messages come back;
    ``LAST_ID`` gives those older than it (newest first); ``FIRST_ID`` those newer than it, in id
    order (``FIRST_ID=0``: from the very first message).
    """
    params = {str(k).upper(): v for k, v in params.items()}  # the portal upper-cases keys
    if params.get("CHAT_ID") and str(params["CHAT_ID"]).isdigit() and int(params["CHAT_ID"]) > 0:
        params = {**params, "DIALOG_ID": f"chat{params['CHAT_ID']}"}
    dialog = str(params.get("DIALOG_ID") or "")
    match = _DIALOG_ID.fullmatch(dialog)
    if match is None:
        raise ApiError("DIALOG_ID_EMPTY", "Dialog ID can't be empty")
    first_id = _id_param(params, "FIRST_ID")
    last_id = _id_param(params, "LAST_ID") if first_id is None else None
    limit = _limit(params)
    with portal.lock:
        chat = portal.chats.get(int(match.group(1))) if match.group(1) else None
        # Private (user id) and sonet-group dialogs do not exist in this simulator.
        if chat is None or not _has_access(chat, ctx.user_id):
            raise ApiError("ACCESS_ERROR", "You do not have access to the specified dialog", 403)
        stored = chat["messages"]
        if first_id is not None:
            window = sorted((m for m in stored if m["id"] > first_id), key=lambda m: m["id"])
        else:
            window = sorted(
                (m for m in stored if not last_id or m["id"] < last_id), key=lambda m: m["id"], reverse=True
            )
        if limit > 0:
            window = window[:limit]
        authors = sorted({m["author_id"] for m in window if m["author_id"]})
        return {
            "messages": [_message_row(m) for m in window],
            "users": [_user_row(portal, user_id) for user_id in authors],
            "files": [],
            "chat_id": chat["ID"],
        }


def _connector_line(portal: Portal, params: dict[str, Any]) -> tuple[str, str]:
    connector = str(params.get("CONNECTOR") or "")
    line = str(params.get("LINE") or "")
    if not connector or not line:
        raise ApiError("ERROR_ARGUMENT", "CONNECTOR and LINE are required")
    if connector not in portal.connectors:
        raise ApiError("IMCONNECTOR_NO_CORRECT_PROVIDER", f"Connector {connector!r} is not registered")
    if line not in portal.lines:
        raise ApiError("ERROR_ARGUMENT", f"Line {line!r} does not exist")
    return connector, line


def connector_register(portal: Portal, params: dict[str, Any], ctx: Context) -> dict[str, bool]:
    for key in ("ID", "NAME", "ICON", "PLACEMENT_HANDLER"):
        if not params.get(key):
            raise ApiError("ERROR_ARGUMENT", f"Parameter {key} is required")
    connector = str(params["ID"]).lower()
    if "." in connector:
        raise ApiError("ERROR_ARGUMENT", "Connector ID must not contain dots")
    with portal.lock:
        portal.connectors[connector] = {k: v for k, v in params.items() if k != "auth"} | {"ID": connector}
    return {"result": True}


def connector_activate(portal: Portal, params: dict[str, Any], ctx: Context) -> bool:
    with portal.lock:
        connector, line = _connector_line(portal, params)
        portal.active[(connector, line)] = str(params.get("ACTIVE", "1")) in ("1", "Y", "true", "True")
    return True


def connector_data_set(portal: Portal, params: dict[str, Any], ctx: Context) -> bool:
    with portal.lock:
        connector, line = _connector_line(portal, params)
        data = params.get("DATA")
        if not isinstance(data, dict):
            raise ApiError("ERROR_ARGUMENT", "DATA is required")
        portal.connector_data[(connector, line)] = dict(data)
    return True


def connector_status(portal: Portal, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    with portal.lock:
        connector, line = _connector_line(portal, params)
        active = portal.active.get((connector, line), False)
        return {"LINE": line, "CONNECTOR": connector, "ERROR": False, "CONFIGURED": active, "STATUS": active}


def _require_block(item: Any, name: str, index: int) -> dict[str, Any]:
    block = item.get(name) if isinstance(item, dict) else None
    if not isinstance(block, dict):
        raise ApiError("ERROR_ARGUMENT", f"MESSAGES[{index}] has no '{name}' block")
    return block


def send_messages(portal: Portal, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    messages = params.get("MESSAGES")
    if not isinstance(messages, list) or not messages:
        raise ApiError("ERROR_ARGUMENT", "MESSAGES is required")
    results = []
    with portal.lock:
        connector, line = _connector_line(portal, params)
        if not portal.active.get((connector, line)):
            raise ApiError("NOT_ACTIVE_LINE", f"Connector {connector} is not active on line {line}")
        for index, item in enumerate(messages):
            user, message, chat = (_require_block(item, n, index) for n in ("user", "message", "chat"))
            if not user.get("id") or not chat.get("id"):
                raise ApiError("ERROR_ARGUMENT", f"MESSAGES[{index}] needs user.id and chat.id")
            if portal.refuses(str(message.get("text") or "")):
                # The portal's per-element refusal (bitrix24-api.md §11): at the element's index.
                error = {"code": "ERROR_SEND_MESSAGE", "message": "message was not added"}
                results.append({"SUCCESS": False, "ERRORS": [error]})
                continue
            ukey = (connector, str(user["id"]))
            if ukey not in portal.external_users:
                portal.external_users[ukey] = portal.next_id("user")
            user_id = portal.external_users[ukey]
            ckey = (connector, line, str(chat["id"]))
            if ckey not in portal.external_chats:
                portal.external_chats[ckey] = _new_chat(
                    portal,
                    TYPE="LINES",
                    TITLE=str(chat.get("name") or user.get("name") or chat["id"]),
                    OWNER=0,
                    USERS=[user_id],
                    ENTITY_TYPE="LINES",
                    ENTITY_ID=f"{connector}|{line}|{chat['id']}|{user_id}",
                    crm=_tracked_contacts(portal, user.get("phone")),
                    openline={
                        "connector": connector,
                        "line": line,
                        "external_chat_id": str(chat["id"]),
                        "external_user_id": str(user["id"]),
                        "session_id": portal.next_id("session"),
                    },
                )
            chat_id = portal.external_chats[ckey]
            stored = _add_message(
                portal,
                chat_id,
                user_id,
                str(message.get("text") or ""),
                external_id=message.get("id"),
                # Bitrix24 keeps the connector's external message id in the message params as
                # CONNECTOR_MID, an array of strings (imopenlines/imconnector source: the message is
                # added with PARAMS['CONNECTOR_MID']); im.dialog.messages.get returns it in ``params``.
                connector_mid=[str(message["id"])] if message.get("id") not in (None, "") else [],
                direction="in",
                user_name=user.get("name"),
            )
            session = portal.chats[chat_id]["openline"]["session_id"]
            results.append(
                {
                    "user": user_id,
                    "message": [stored["id"]],
                    "chat": [chat_id],
                    "extra": [],
                    "SUCCESS": True,
                    "session": {"ID": session, "CHAT_ID": chat_id},
                }
            )
    return {"SUCCESS": True, "DATA": {"RESULT": results}}


def _tracked_contacts(portal: Portal, phone: Any) -> list[int]:
    """The CRM tracker's link for a new dialog: every contact carrying the dialog user's phone."""
    wanted = normalize_phone(str(phone or ""))
    if not wanted:
        return []
    return sorted(
        cid
        for cid, rec in portal.contacts.items()
        if any(normalize_phone(r["VALUE"]) == wanted for r in rec["PHONE"])
    )


CRM_ENTITY_TYPES = ("lead", "deal", "company", "contact")


def crm_chat_get(portal: Portal, params: dict[str, Any], ctx: Context) -> list[dict[str, Any]]:
    """``imopenlines.crm.chat.get``: the Open Lines chats linked to a CRM record (contacts only here)."""
    entity_type = str(params.get("CRM_ENTITY_TYPE") or "").lower()
    if entity_type not in CRM_ENTITY_TYPES:
        raise ApiError("ERROR_ARGUMENT", f"CRM_ENTITY_TYPE must be one of {', '.join(CRM_ENTITY_TYPES)}")
    entity = _id_param(params, "CRM_ENTITY")
    if entity is None:
        raise ApiError("ERROR_ARGUMENT", "CRM_ENTITY is required")
    if entity_type != "contact":
        return []
    with portal.lock:
        rows = []
        for chat in portal.chats.values():
            line = chat.get("openline")
            if line is None or entity not in (chat.get("crm") or []):
                continue
            connector = portal.connectors.get(line["connector"], {})
            rows.append(
                {
                    "CHAT_ID": str(chat["ID"]),
                    "CONNECTOR_ID": line["connector"],
                    "CONNECTOR_TITLE": str(connector.get("NAME") or line["connector"]),
                }
            )
        return rows


def send_status_delivery(portal: Portal, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
    messages = params.get("MESSAGES")
    if not isinstance(messages, list) or not messages:
        raise ApiError("ERROR_ARGUMENT", "MESSAGES is required")
    with portal.lock:
        _connector_line(portal, params)
        for index, item in enumerate(messages):
            im = _require_block(item, "im", index)
            _require_block(item, "message", index)
            chat = portal.chats.get(int(im.get("chat_id") or 0))
            if chat is None:
                raise ApiError("ERROR_ARGUMENT", f"MESSAGES[{index}].im.chat_id is unknown")
            for stored in chat["messages"]:
                if str(stored["id"]) == str(im.get("message_id")):
                    stored["delivered"] = True
                    stored["read"] = True
    return {"SUCCESS": True, "DATA": []}


def config_list(portal: Portal, params: dict[str, Any], ctx: Context) -> list[dict[str, Any]]:
    with portal.lock:
        return [dict(line) for line in portal.lines.values()]


def event_bind(portal: Portal, params: dict[str, Any], ctx: Context) -> bool:
    event = str(params.get("event") or params.get("EVENT") or "").upper()
    handler = str(params.get("handler") or params.get("HANDLER") or "")
    if not event or not handler:
        raise ApiError("ERROR_ARGUMENT", "event and handler are required")
    with portal.lock:
        if any(h["event"] == event and h["handler"] == handler for h in portal.handlers):
            raise ApiError("ERROR_EVENT_HANDLER_ALREADY_EXISTS", "Handler already binded")
        portal.handlers.append({"id": portal.next_id("handler"), "event": event, "handler": handler})
    return True


def event_get(portal: Portal, params: dict[str, Any], ctx: Context) -> list[dict[str, Any]]:
    with portal.lock:
        return [{"event": h["event"], "handler": h["handler"], "auth_type": 0} for h in portal.handlers]


def event_unbind(portal: Portal, params: dict[str, Any], ctx: Context) -> dict[str, int]:
    event = str(params.get("event") or "").upper()
    handler = str(params.get("handler") or "")
    with portal.lock:
        before = len(portal.handlers)
        portal.handlers[:] = [
            h for h in portal.handlers if not (h["event"] == event and h["handler"] == handler)
        ]
        return {"count": before - len(portal.handlers)}


def operator_message(portal: Portal, chat_id: int, text: str, operator_id: int, operator_name: str) -> dict:
    """Store an operator's reply in an Open Lines chat; return what the event needs."""
    with portal.lock:
        chat = portal.chats.get(chat_id)
        if chat is None or not chat.get("openline"):
            raise ApiError("CHAT_ID", f"chat {chat_id} is not an Open Lines chat", 404)
        body = f"[b]{operator_name}:[/b][br] {text}"
        stored = _add_message(portal, chat_id, operator_id, body, direction="out", delivered=False)
        return {"chat": chat, "message": stored}


METHODS = {
    "im.chat.add": chat_add,
    "im.chat.get": chat_get,
    "im.message.add": message_add,
    "im.dialog.messages.get": dialog_messages_get,
    "imconnector.register": connector_register,
    "imconnector.activate": connector_activate,
    "imconnector.connector.data.set": connector_data_set,
    "imconnector.status": connector_status,
    "imconnector.send.messages": send_messages,
    "imconnector.send.status.delivery": send_status_delivery,
    "imopenlines.config.list.get": config_list,
    "imopenlines.crm.chat.get": crm_chat_get,
    "event.bind": event_bind,
    "event.get": event_get,
    "event.unbind": event_unbind,
}
