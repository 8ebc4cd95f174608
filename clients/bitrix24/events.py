"""Inbound events: parse the form-encoded ``ONIMCONNECTORMESSAGEADD`` and verify its sender."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from clients.bitrix24.errors import Bitrix24InputError
from schemas.bitrix24 import MESSAGE_EVENT, ConnectorEvent
from schemas.validation import format_validation_errors


def parse_connector_event(
    form: Mapping[str, Any] | Iterable[tuple[str, str]] | bytes | str,
) -> ConnectorEvent:
    """Parse a bracket-encoded event body (raw bytes, a query string or decoded pairs)."""
    try:
        return ConnectorEvent.from_form(form)
    except (ValidationError, ValueError) as exc:
        raise Bitrix24InputError(f"{MESSAGE_EVENT} payload is invalid: {_summary(exc)}") from None


def verify_application_token(event: ConnectorEvent, expected: str) -> bool:
    """True only when the event carries the app's ``application_token`` (constant-time compare)."""
    if not expected:
        return False
    given = event.auth.application_token or ""
    return hmac.compare_digest(given.encode(), expected.encode())


def _summary(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return format_validation_errors(exc, limit=5)
    return str(exc)


__all__ = ["parse_connector_event", "verify_application_token"]
