"""Open Lines connector calls (``imconnector.*``, ``imopenlines.config.list.get``,
``imopenlines.crm.chat.get``, ``event.bind``, ``event.offline.get|clear``).

These need an OAuth app context: with a webhook the portal answers 403 WRONG_AUTH_TYPE, which
surfaces as :class:`Bitrix24AccessError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from loguru import logger

from clients.bitrix24.errors import Bitrix24InputError
from schemas.bitrix24 import ConnectorMessage, DeliveryStatus, OpenLineCrmChat, SendMessagesResult

if TYPE_CHECKING:
    from schemas.bitrix24 import B24Envelope

DEFAULT_ICON = (
    "data:image/svg+xml;charset=US-ASCII,%3Csvg%20xmlns%3D%22http%3A%2F%2Fwww.w3.org%2F2000%2Fsvg%22"
    "%20viewBox%3D%220%200%2070%2071%22%3E%3Ccircle%20cx%3D%2235%22%20cy%3D%2235%22%20r%3D%2230%22%2F%3E%3C%2Fsvg%3E"
)


def _wire(items: Iterable[Any], model: type[ConnectorMessage] | type[DeliveryStatus]) -> list[dict]:
    return [(i if isinstance(i, model) else model.model_validate(i)).to_wire() for i in items]


class OpenLinesMixin:
    if TYPE_CHECKING:

        def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...

        def call_raw(
            self, method: str, params: dict[str, Any] | None = None, *, write: bool | None = None
        ) -> B24Envelope: ...

    def register_connector(
        self,
        connector: str,
        name: str,
        placement_handler: str,
        *,
        icon: Mapping[str, Any] | None = None,
        chat_group: bool = False,
        **flags: Any,
    ) -> bool:
        """Register (or update) the connector ``connector`` (lower-cased, no dots)."""
        connector_id = connector.lower()
        if "." in connector_id:
            raise Bitrix24InputError(f"connector id {connector!r} must not contain dots")
        params = {
            "ID": connector_id,
            "NAME": name,
            "ICON": dict(icon or {"DATA_IMAGE": DEFAULT_ICON}),
            "PLACEMENT_HANDLER": placement_handler,
            "CHAT_GROUP": "Y" if chat_group else "N",
            **flags,
        }
        result = self.call("imconnector.register", params)
        ok = bool(result.get("result") if isinstance(result, Mapping) else result)
        logger.info("bitrix24 connector {} registered: {}", connector_id, ok)
        return ok

    def bind_event(self, event: str, handler: str) -> bool:
        return bool(self.call("event.bind", {"event": event, "handler": handler}))

    def bind_offline_event(self, event: str) -> bool:
        """Also keep ``event`` in the portal's offline queue (``event_type=offline``, no handler URL)."""
        return bool(self.call("event.bind", {"event": event, "event_type": "offline"}))

    def offline_events(
        self, event: str, *, process_id: str | None = None, limit: int = 50
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """``event.offline.get`` with ``clear=0``: the oldest queued ``event`` records, taken for one
        process id until :meth:`clear_offline_events`; the same ``process_id`` gets them again."""
        params: dict[str, Any] = {"filter": {"=EVENT_NAME": event}, "clear": 0, "limit": limit}
        if process_id:
            params["process_id"] = process_id
        result = self.call("event.offline.get", params)
        if not isinstance(result, Mapping):
            return None, []
        events = result.get("events") or []
        return result.get("process_id") or None, [dict(e) for e in events if isinstance(e, Mapping)]

    def clear_offline_events(self, process_id: str, ids: Iterable[str]) -> bool:
        """``event.offline.clear``: delete these records of ``process_id`` from the offline queue."""
        return bool(self.call("event.offline.clear", {"process_id": process_id, "id": list(ids)}))

    def activate_connector(self, connector: str, line: str | int, active: bool = True) -> bool:
        params = {"CONNECTOR": connector, "LINE": str(line), "ACTIVE": 1 if active else 0}
        return bool(self.call("imconnector.activate", params))

    def send_connector_messages(
        self, connector: str, line: str | int, messages: Iterable[ConnectorMessage | Mapping[str, Any]]
    ) -> SendMessagesResult:
        """Deliver subscriber messages into the line; each result carries ``session.CHAT_ID``."""
        params = {"CONNECTOR": connector, "LINE": str(line), "MESSAGES": _wire(messages, ConnectorMessage)}
        return SendMessagesResult.model_validate(self.call("imconnector.send.messages", params))

    def send_delivery_status(
        self, connector: str, line: str | int, statuses: Iterable[DeliveryStatus | Mapping[str, Any]]
    ) -> bool:
        """Report operator messages as delivered to the subscriber (also marks them read)."""
        params = {"CONNECTOR": connector, "LINE": str(line), "MESSAGES": _wire(statuses, DeliveryStatus)}
        result = self.call("imconnector.send.status.delivery", params)
        return bool(result.get("SUCCESS") if isinstance(result, Mapping) else result)

    def list_open_lines(self) -> list[dict[str, Any]]:
        result = self.call("imopenlines.config.list.get", {})
        return list(result) if isinstance(result, list) else []

    def crm_open_line_chats(
        self, entity_type: str, entity_id: int, *, active_only: bool = False
    ) -> list[OpenLineCrmChat]:
        """Open Lines chats the portal's CRM tracker linked to a CRM record (``contact``, ``lead``...).

        The one documented way back from a CRM record to its dialogs: after a first message whose
        answer was lost we know the contact, not the chat.
        """
        params = {
            "CRM_ENTITY_TYPE": entity_type,
            "CRM_ENTITY": entity_id,
            "ACTIVE_ONLY": "Y" if active_only else "N",
        }
        result = self.call("imopenlines.crm.chat.get", params)
        rows = result if isinstance(result, list) else []
        return [OpenLineCrmChat.model_validate(row) for row in rows if isinstance(row, Mapping)]


__all__ = ["DEFAULT_ICON", "OpenLinesMixin"]
