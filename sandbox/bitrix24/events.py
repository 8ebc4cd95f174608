"""The operator stand-in: a reply in an Open Lines chat POSTed as a form-encoded
``ONIMCONNECTORMESSAGEADD`` to every bound handler (once; failed deliveries are not retried)."""

from __future__ import annotations

import time
from typing import Any

import requests

from sandbox.bitrix24 import messaging, offline
from sandbox.bitrix24.forms import encode, flatten
from sandbox.bitrix24.state import ApiError, Portal

EVENT = "ONIMCONNECTORMESSAGEADD"


def find_chat(
    portal: Portal, chat_id: int | None, external_chat_id: str | None, connector: str | None
) -> int:
    with portal.lock:
        if chat_id:
            return int(chat_id)
        for (conn, _line, ext), cid in portal.external_chats.items():
            if ext == str(external_chat_id) and (connector is None or conn == connector):
                return cid
    raise ApiError("CHAT_ID", f"no Open Lines chat for external chat {external_chat_id!r}", 404)


def build_payload(
    portal: Portal, base_url: str, chat: dict, message: dict, handler_id: int
) -> list[tuple[str, str]]:
    line = chat["openline"]
    app = portal.oauth.app
    with portal.lock:
        access = next(iter(portal.oauth.access), "")
    data = {
        "event": EVENT,
        "event_handler_id": handler_id,
        "data": {
            "CONNECTOR": line["connector"],
            "LINE": line["line"],
            "MESSAGES": [
                {
                    "im": {"chat_id": chat["ID"], "message_id": message["id"]},
                    "message": {
                        "user_id": message["author_id"],
                        "text": message["text"],
                        **({"files": message["files"]} if message.get("files") else {}),
                    },
                    "chat": {"id": line["external_chat_id"]},
                }
            ],
        },
        "ts": int(time.time()),
        "auth": {
            "access_token": access,
            "expires": int(time.time()) + 3600,
            "expires_in": 3600,
            "scope": app.scope,
            "domain": portal.domain,
            "server_endpoint": f"{base_url}/rest/",
            "status": "L",
            "client_endpoint": f"{base_url}/rest/",
            "member_id": app.member_id,
            "user_id": message["author_id"],
            "application_token": app.application_token,
        },
    }
    return flatten(data)


def operator_reply(
    portal: Portal,
    base_url: str,
    *,
    text: str,
    chat_id: int | None = None,
    external_chat_id: str | None = None,
    connector: str | None = None,
    operator_id: int = 1,
    operator_name: str = "Operator",
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Store the reply (``files``: ``[{name, size?}]`` uploads), then deliver the event to every
    handler; report each delivery."""
    target = find_chat(portal, chat_id, external_chat_id, connector)
    stored = messaging.operator_message(portal, target, text, operator_id, operator_name, files)
    chat, message = stored["chat"], stored["message"]
    line = chat["openline"]
    offline.record(
        portal,
        EVENT,
        {
            "CONNECTOR": line["connector"],
            "LINE": line["line"],
            "MESSAGES": [
                {
                    "im": {"chat_id": chat["ID"], "message_id": message["id"]},
                    "message": {
                        "user_id": message["author_id"],
                        "text": message["text"],
                        **({"files": message["files"]} if message.get("files") else {}),
                    },
                    "chat": {"id": line["external_chat_id"]},
                }
            ],
        },
        {"user_id": message["author_id"]},
    )
    with portal.lock:
        handlers = [h for h in portal.handlers if h["event"] == EVENT]
    deliveries = []
    for handler in handlers:
        body = encode(build_payload(portal, base_url, stored["chat"], stored["message"], handler["id"]))
        try:
            response = requests.post(
                handler["handler"],
                data=body,
                timeout=10,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "User-Agent": "Bitrix24 Webhook Engine",
                },
            )
            deliveries.append({"handler": handler["handler"], "status": response.status_code})
        except requests.RequestException as exc:
            deliveries.append({"handler": handler["handler"], "error": type(exc).__name__})
    return {"chat_id": target, "message_id": stored["message"]["id"], "deliveries": deliveries}
