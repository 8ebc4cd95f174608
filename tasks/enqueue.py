"""Enqueue a task by name from Python without importing its module: ``enqueue(name, payload) -> id``.

The payload is validated against the same schema the task uses (so a bad one is refused here, with
a field-level message, instead of failing in the worker) and sent by name to the task's queue.
Services that do not import our code can call ``send_task`` directly (see README).
"""

from __future__ import annotations

from typing import Any

from tasks.catalogue import spec
from tasks.errors import InvalidPayloadError
from tasks.runtime.operation import validate_payload
from tasks.runtime.queues import queue_for


def validate(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as the task will receive it (normalised JSON); raises on a bad name or payload."""
    if not isinstance(payload, dict):
        raise InvalidPayloadError(f"payload for {name} must be a JSON object, got {type(payload).__name__}")
    model = validate_payload(spec(name).payload, payload, task_name=name)
    return model.model_dump(mode="json", exclude_unset=True)


def enqueue(
    name: str, payload: dict[str, Any], *, task_id: str | None = None, countdown: float | None = None
) -> str:
    """Validate and send; returns the task id. ``task_id`` makes the enqueue idempotent per id."""
    from tasks.runtime.app import app

    kwargs = validate(name, payload)
    result = app.send_task(
        name, kwargs=kwargs, queue=queue_for(name).value, task_id=task_id, countdown=countdown
    )
    return str(result.id)


__all__ = ["enqueue", "validate"]
