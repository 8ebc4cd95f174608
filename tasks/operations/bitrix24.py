"""One task per Bitrix24 operation we use (``bitrix24.<operation>``), on the ``bitrix24`` queue.

The portal's rate limit is shared by every process (Redis leaky bucket inside the client), and this
queue is separate so waiting on it never delays RosDomofon calls. ``bitrix24.find_or_create_contact``
(lock + look-up + create) belongs to the message flow, not here. ``create_contact`` looks the phone up
first when run as a retry, since the previous attempt may have committed before its answer was lost.
"""

from __future__ import annotations

from schemas.operations import OperationResult
from schemas.operations import bitrix24 as ops
from schemas.phone import normalize_phone
from tasks.runtime.operation import current_attempt, operation
from tasks.runtime.queues import Queue
from tasks.runtime.resources import bitrix24_client
from tasks.settings import get_settings

Q = Queue.BITRIX24


def _connector(payload: ops.ConnectorLinePayload) -> tuple[str, str]:
    settings = get_settings()
    connector = payload.connector or settings.openlines_connector_id
    line = payload.line if payload.line not in (None, "") else settings.openlines_line_id
    if not line:
        from tasks.errors import InvalidPayloadError

        raise InvalidPayloadError("line: required when OPENLINES_LINE_ID is not set")
    return connector, str(line)


@operation(
    "bitrix24.find_contacts_by_phone",
    queue=Q,
    payload=ops.FindContactsByPhonePayload,
    result=ops.ContactsByPhoneResult,
)
def find_contacts_by_phone(payload: ops.FindContactsByPhonePayload) -> ops.ContactsByPhoneResult:
    """Contact ids holding each phone (crm.duplicate.findbycomm, 20 phones per call, batched)."""
    return ops.ContactsByPhoneResult(contacts=bitrix24_client().find_contacts_by_phone(payload.phones))


@operation("bitrix24.get_contact", queue=Q, payload=ops.ContactIdPayload, result=ops.ContactResult)
def get_contact(payload: ops.ContactIdPayload) -> ops.ContactResult:
    """One contact with its phones."""
    return ops.ContactResult(contact=bitrix24_client().get_contact(payload.contact_id))


@operation("bitrix24.create_contact", queue=Q, payload=ops.CreateContactPayload, result=ops.ContactIdResult)
def create_contact(payload: ops.CreateContactPayload) -> ops.ContactIdResult:
    """Create a contact; on a retry, first look for one already holding its first phone."""
    client = bitrix24_client()
    attempt = current_attempt()
    phone = _first_phone(payload.fields)
    if attempt is not None and attempt.is_retry and phone:
        existing = client.find_contacts_by_phone([phone])[phone]
        if existing:
            return ops.ContactIdResult(contact_id=existing[0], existed=True)
    return ops.ContactIdResult(contact_id=client.create_contact(payload.fields))


def _first_phone(fields: dict) -> str | None:
    rows = fields.get("PHONE") or []
    for row in rows if isinstance(rows, list) else []:
        value = row.get("VALUE") if isinstance(row, dict) else None
        if value:
            try:
                return normalize_phone(value)
            except ValueError:
                return None
    return None


@operation("bitrix24.update_contact", queue=Q, payload=ops.UpdateContactPayload, result=OperationResult)
def update_contact(payload: ops.UpdateContactPayload) -> OperationResult:
    """Update the given fields; phone rows are merged by value (idempotent)."""
    return OperationResult(ok=bitrix24_client().update_contact(payload.contact_id, payload.fields))


@operation("bitrix24.add_timeline_comment", queue=Q, payload=ops.TimelineCommentPayload, result=ops.IdResult)
def add_timeline_comment(payload: ops.TimelineCommentPayload) -> ops.IdResult:
    """A comment in the contact's timeline."""
    return ops.IdResult(id=bitrix24_client().add_timeline_comment(payload.contact_id, payload.text))


@operation("bitrix24.create_crm_chat", queue=Q, payload=ops.CreateCrmChatPayload, result=ops.IdResult)
def create_crm_chat(payload: ops.CreateCrmChatPayload) -> ops.IdResult:
    """A chat linked to the contact's CRM card (webhook-only portals); returns the chat id."""
    return ops.IdResult(
        id=bitrix24_client().create_crm_chat(payload.contact_id, payload.title, payload.users)
    )


@operation("bitrix24.post_chat_message", queue=Q, payload=ops.ChatMessagePayload, result=ops.IdResult)
def post_chat_message(payload: ops.ChatMessagePayload) -> ops.IdResult:
    """A message in a chat; returns the message id."""
    return ops.IdResult(id=bitrix24_client().post_chat_message(payload.chat_id, payload.text))


@operation(
    "bitrix24.send_openlines_messages",
    queue=Q,
    payload=ops.SendOpenLinesMessagesPayload,
    result=ops.OpenLinesSendResult,
)
def send_openlines_messages(payload: ops.SendOpenLinesMessagesPayload) -> ops.OpenLinesSendResult:
    """Subscriber messages into an Open Line (imconnector.send.messages)."""
    connector, line = _connector(payload)
    result = bitrix24_client().send_connector_messages(connector, line, payload.messages)
    return ops.OpenLinesSendResult(result=result)


@operation(
    "bitrix24.send_delivery_status", queue=Q, payload=ops.DeliveryStatusPayload, result=OperationResult
)
def send_delivery_status(payload: ops.DeliveryStatusPayload) -> OperationResult:
    """Report operator messages as delivered to the subscriber."""
    connector, line = _connector(payload)
    return OperationResult(ok=bitrix24_client().send_delivery_status(connector, line, payload.statuses))


@operation(
    "bitrix24.register_connector", queue=Q, payload=ops.RegisterConnectorPayload, result=OperationResult
)
def register_connector(payload: ops.RegisterConnectorPayload) -> OperationResult:
    """Register (or update) our Open Lines connector."""
    connector = payload.connector or get_settings().openlines_connector_id
    ok = bitrix24_client().register_connector(
        connector, payload.name, payload.placement_handler, chat_group=payload.chat_group
    )
    return OperationResult(ok=ok)


@operation(
    "bitrix24.activate_connector", queue=Q, payload=ops.ActivateConnectorPayload, result=OperationResult
)
def activate_connector(payload: ops.ActivateConnectorPayload) -> OperationResult:
    """Switch the connector on (or off) for a line."""
    connector, line = _connector(payload)
    return OperationResult(ok=bitrix24_client().activate_connector(connector, line, payload.active))


@operation("bitrix24.bind_event", queue=Q, payload=ops.BindEventPayload, result=OperationResult)
def bind_event(payload: ops.BindEventPayload) -> OperationResult:
    """Subscribe our webhook receiver to a portal event (e.g. ONIMCONNECTORMESSAGEADD)."""
    return OperationResult(ok=bitrix24_client().bind_event(payload.event, payload.handler))
