"""Bitrix24 REST wire formats: the envelope, errors, batch, contacts, OAuth tokens and Open Lines.

Field names follow the portal exactly (upper case for CRM and Open Lines blocks, lower case inside
``imconnector`` message blocks) because these models are both parsed from and sent to the wire.
The portal returns ids as numbers or strings and empty maps as ``[]``; the validators here absorb
both so callers never branch on that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from pydantic import Field, field_validator

from schemas.common import WireModel

# --- envelope -------------------------------------------------------------------------------------


class B24Time(WireModel):
    """The ``time`` block of every answer; ``operating`` feeds the per-method time budget."""

    start: float | None = None
    finish: float | None = None
    duration: float | None = None
    processing: float | None = None
    date_start: str | None = None
    date_finish: str | None = None
    operating: float | None = None
    operating_reset_at: float | None = None


class B24Envelope(WireModel):
    """A successful answer. ``next`` is present only while rows remain: test for ``None``."""

    result: Any = None
    time: B24Time | None = None
    total: int | None = None
    next: int | None = None


class B24ErrorBody(WireModel):
    """An error answer; legacy ``crm.contact.*`` methods send an empty ``error``."""

    error: str = ""
    error_description: str = ""


# --- batch ----------------------------------------------------------------------------------------


def _as_map(value: Any) -> dict[str, Any]:
    """The portal sends an empty section as ``[]`` and list-form batches as lists: key by string id."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    raise ValueError(f"batch section must be an object or a list, got {type(value).__name__}")


class BatchSection(WireModel):
    """The inner ``result`` of a ``batch`` answer: per-command results, errors, totals, next, time."""

    result: dict[str, Any] = Field(default_factory=dict)
    result_error: dict[str, B24ErrorBody] = Field(default_factory=dict)
    result_total: dict[str, int] = Field(default_factory=dict)
    result_next: dict[str, int] = Field(default_factory=dict)
    result_time: dict[str, B24Time] = Field(default_factory=dict)

    @field_validator("result", "result_error", "result_total", "result_next", "result_time", mode="before")
    @classmethod
    def _tolerate_lists(cls, value: Any) -> dict[str, Any]:
        return _as_map(value)


class BatchResult(WireModel):
    """Merged outcome of one or more batch chunks, keyed by the caller's command ids."""

    results: dict[str, Any] = Field(default_factory=dict)
    errors: dict[str, B24ErrorBody] = Field(default_factory=dict)
    totals: dict[str, int] = Field(default_factory=dict)
    next: dict[str, int] = Field(default_factory=dict)
    requests: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def merge(self, section: BatchSection, rename: Mapping[str, str] | None = None) -> None:
        """Fold one chunk's section in, mapping the chunk's ids back to the caller's ids."""
        rename = rename or {}
        self.results.update({rename.get(k, k): v for k, v in section.result.items()})
        self.errors.update({rename.get(k, k): v for k, v in section.result_error.items()})
        self.totals.update({rename.get(k, k): v for k, v in section.result_total.items()})
        self.next.update({rename.get(k, k): v for k, v in section.result_next.items()})
        self.requests += 1


# --- CRM contacts ---------------------------------------------------------------------------------


def _opt_int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    return int(value)


class MultiField(WireModel):
    """One row of a multifield (``PHONE``, ``EMAIL``, ``WEB``, ``IM``).

    Rows read back carry ``ID``; on update a row without ``ID`` is ADDED, so modify rows by id.
    """

    ID: int | None = None
    VALUE_TYPE: str | None = None
    VALUE: str | None = None
    TYPE_ID: str | None = None
    DELETE: str | None = None

    _id = field_validator("ID", mode="before")(lambda v: _opt_int(v))


class Contact(WireModel):
    """A CRM contact as ``crm.contact.get``/``list`` returns it (unknown and ``UF_CRM_*`` fields kept)."""

    ID: int
    NAME: str | None = None
    LAST_NAME: str | None = None
    SECOND_NAME: str | None = None
    COMMENTS: str | None = None
    SOURCE_ID: str | None = None
    SOURCE_DESCRIPTION: str | None = None
    OPENED: str | None = None
    ASSIGNED_BY_ID: int | None = None
    TYPE_ID: str | None = None
    ORIGINATOR_ID: str | None = None
    ORIGIN_ID: str | None = None
    PHONE: list[MultiField] = Field(default_factory=list)
    EMAIL: list[MultiField] = Field(default_factory=list)
    IM: list[MultiField] = Field(default_factory=list)
    WEB: list[MultiField] = Field(default_factory=list)

    _assigned = field_validator("ASSIGNED_BY_ID", mode="before")(lambda v: _opt_int(v))

    @property
    def userfields(self) -> dict[str, Any]:
        extra = self.model_extra or {}
        return {k: v for k, v in extra.items() if k.startswith("UF_")}


class UserFieldSpec(WireModel):
    """A custom contact field to ensure; ``FIELD_NAME`` may omit the forced ``UF_CRM_`` prefix."""

    FIELD_NAME: str
    USER_TYPE_ID: str = "string"
    LABEL: str | None = None
    MULTIPLE: str | None = None
    MANDATORY: str | None = None
    SHOW_FILTER: str | None = None
    XML_ID: str | None = None

    @field_validator("FIELD_NAME")
    @classmethod
    def _full_name(cls, value: str) -> str:
        name = value.strip().upper()
        if name.startswith("UF_CRM_"):
            name = name[len("UF_CRM_") :]
        elif name.startswith("UF_"):
            name = name[len("UF_") :]
        full = "UF_CRM_" + name
        if not re.fullmatch(r"UF_CRM_[A-Z0-9_]+", full) or len(full) > 50:
            raise ValueError(f"FIELD_NAME {value!r} must be A-Z0-9_ and at most 50 characters with UF_CRM_")
        return full


# --- OAuth ----------------------------------------------------------------------------------------


class OAuthToken(WireModel):
    """The auth server's answer to a code exchange or refresh; the refresh token rotates every time."""

    access_token: str
    refresh_token: str
    expires_in: int = 3600
    expires: int | None = None
    client_endpoint: str | None = None
    server_endpoint: str | None = None
    member_id: str | None = None
    scope: str | None = None
    status: str | None = None
    user_id: int | None = None
    domain: str | None = None

    def __repr__(self) -> str:  # tokens never appear in logs or tracebacks
        return f"OAuthToken(client_endpoint={self.client_endpoint!r}, expires={self.expires!r})"

    __str__ = __repr__


# --- Open Lines connector -------------------------------------------------------------------------


class ConnectorUser(WireModel):
    id: str
    name: str | None = None
    last_name: str | None = None
    picture: dict[str, str] | None = None
    url: str | None = None
    gender: str | None = None
    email: str | None = None
    phone: str | None = None
    skip_phone_validate: str | None = None

    _id = field_validator("id", mode="before")(lambda v: str(v))


class ConnectorMessageBody(WireModel):
    id: str | None = None
    date: int | None = None
    text: str | None = None
    files: list[dict[str, str]] | None = None
    disable_crm: str | None = None
    user_id: int | None = None

    _id = field_validator("id", mode="before")(lambda v: None if v is None else str(v))


class ConnectorChat(WireModel):
    id: str
    name: str | None = None
    url: str | None = None

    _id = field_validator("id", mode="before")(lambda v: str(v))


class ConnectorMessage(WireModel):
    """One item of ``imconnector.send.messages``: all three blocks are required by the portal."""

    user: ConnectorUser
    message: ConnectorMessageBody
    chat: ConnectorChat


class ConnectorSession(WireModel):
    ID: int | None = None
    CHAT_ID: int | None = None

    _ids = field_validator("ID", "CHAT_ID", mode="before")(lambda v: _opt_int(v))


class SentMessage(WireModel):
    """Per-message outcome of ``send.messages``; store ``session.CHAT_ID`` for later replies."""

    SUCCESS: bool = False
    user: Any = None
    message: Any = None
    chat: Any = None
    extra: Any = None
    ERRORS: Any = None
    session: ConnectorSession | None = None


class SendMessagesData(WireModel):
    RESULT: list[SentMessage] = Field(default_factory=list)

    @field_validator("RESULT", mode="before")
    @classmethod
    def _list(cls, value: Any) -> list[Any]:
        return list(_as_map(value).values())


class SendMessagesResult(WireModel):
    SUCCESS: bool = False
    DATA: SendMessagesData = Field(default_factory=SendMessagesData)

    @field_validator("DATA", mode="before")
    @classmethod
    def _data(cls, value: Any) -> Any:
        return {} if value in (None, []) else value


class OpenLineCrmChat(WireModel):
    """One row of ``imopenlines.crm.chat.get``: an Open Lines chat the CRM tracker linked to a record."""

    CHAT_ID: int
    CONNECTOR_ID: str = ""
    CONNECTOR_TITLE: str | None = None


class ImRef(WireModel):
    """The portal-side ids of a message: ``im{chat_id, message_id}``."""

    chat_id: int
    message_id: int

    _ids = field_validator("chat_id", "message_id", mode="before")(lambda v: int(v))


class DeliveryMessageRef(WireModel):
    id: list[str]
    date: int | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _always_list(cls, value: Any) -> list[str]:
        items = value if isinstance(value, list | tuple) else [value]
        return [str(v) for v in items]


class DeliveryStatus(WireModel):
    """One item of ``imconnector.send.status.delivery`` (external message ids, always an array)."""

    im: ImRef
    message: DeliveryMessageRef
    chat: ConnectorChat


# --- ONIMCONNECTORMESSAGEADD event ------------------------------------------------------------------

# The event an operator's message in an Open Lines chat raises: we bind it and the receiver accepts it.
MESSAGE_EVENT = "ONIMCONNECTORMESSAGEADD"


class EventMessageBody(WireModel):
    id: str | None = None
    user_id: int | None = None
    text: str = ""
    files: Any = None

    _id = field_validator("id", mode="before")(lambda v: None if v is None else str(v))
    _uid = field_validator("user_id", mode="before")(lambda v: _opt_int(v))


class EventMessage(WireModel):
    im: ImRef
    message: EventMessageBody
    chat: ConnectorChat


class EventData(WireModel):
    CONNECTOR: str
    LINE: str
    MESSAGES: list[EventMessage] = Field(default_factory=list)

    _line = field_validator("LINE", mode="before")(lambda v: str(v))

    @field_validator("MESSAGES", mode="before")
    @classmethod
    def _list(cls, value: Any) -> list[Any]:
        return list(_as_map(value).values())


class EventAuth(WireModel):
    application_token: str = ""
    access_token: str | None = None
    expires_in: int | None = None
    domain: str | None = None
    client_endpoint: str | None = None
    server_endpoint: str | None = None
    member_id: str | None = None

    def __repr__(self) -> str:
        return f"EventAuth(domain={self.domain!r}, member_id={self.member_id!r})"

    __str__ = __repr__


class ConnectorEvent(WireModel):
    """An operator reply from Open Lines. Verify ``auth.application_token`` before trusting it."""

    event: str
    event_handler_id: int | None = None
    data: EventData
    ts: int | None = None
    auth: EventAuth = Field(default_factory=EventAuth)

    _handler = field_validator("event_handler_id", "ts", mode="before")(lambda v: _opt_int(v))

    @classmethod
    def from_form(cls, form: Mapping[str, Any] | Iterable[tuple[str, str]] | bytes | str) -> ConnectorEvent:
        """Parse the bracket-encoded form body (``data[MESSAGES][0][im][chat_id]=…``)."""
        return cls.model_validate(unflatten_form(form))


_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def unflatten_form(form: Mapping[str, Any] | Iterable[tuple[str, str]] | bytes | str) -> dict[str, Any]:
    """Turn PHP-style bracket keys into nested dicts (list indexes stay string keys; models re-list them)."""
    if isinstance(form, bytes):
        form = form.decode("utf-8")
    if isinstance(form, str):
        pairs: Iterable[tuple[str, Any]] = parse_qsl(form, keep_blank_values=True)
    elif isinstance(form, Mapping):
        pairs = form.items()
    else:
        pairs = form
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"form key {key!r} is not a bracket-encoded name")
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"form key {key!r} conflicts with a scalar value")
            node = child
        node[parts[-1]] = value
    return root


__all__ = [
    "MESSAGE_EVENT",
    "B24Envelope",
    "B24ErrorBody",
    "B24Time",
    "BatchResult",
    "BatchSection",
    "ConnectorChat",
    "ConnectorEvent",
    "ConnectorMessage",
    "ConnectorMessageBody",
    "ConnectorSession",
    "ConnectorUser",
    "Contact",
    "DeliveryMessageRef",
    "DeliveryStatus",
    "EventAuth",
    "EventData",
    "EventMessage",
    "EventMessageBody",
    "ImRef",
    "MultiField",
    "OAuthToken",
    "OpenLineCrmChat",
    "SendMessagesData",
    "SendMessagesResult",
    "SentMessage",
    "UserFieldSpec",
    "unflatten_form",
]
