"""Reading a MESSAGES_IN record into a validated :class:`KafkaIncomingMessage`.

A record that cannot become a message raises :class:`PoisonRecordError` whose text names the problem
(not JSON, wrong shape with the field, no sender phone or id), so it can travel in a dead-letter header.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from clients.kafka.errors import PoisonRecordError
from schemas.kafka import KafkaIncomingMessage
from schemas.validation import format_validation_errors


def decode_incoming(value: bytes | None) -> KafkaIncomingMessage:
    """Parse and validate one record value; a subscriber message must name its sender."""
    if not value:
        raise PoisonRecordError("empty record value", code="EMPTY")
    try:
        data = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoisonRecordError(f"not JSON: {exc}", code="NOT_JSON") from None
    if not isinstance(data, dict):
        raise PoisonRecordError(
            f"wrong shape: expected a JSON object, got {type(data).__name__}", code="SHAPE"
        )
    try:
        message = KafkaIncomingMessage.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_errors(exc, root="record", limit=5)
        raise PoisonRecordError(f"wrong shape: {problems}", code="SHAPE") from None
    if not message.from_abonent.phone:
        raise PoisonRecordError("no sender phone (fromAbonent.phone is 0 or missing)", code="NO_SENDER")
    if not message.from_abonent.id:
        raise PoisonRecordError("no sender id (fromAbonent.id is 0 or missing)", code="NO_SENDER")
    return message
