"""One way to say why data failed validation: each field and its problem, never the value.

Payloads, settings, webhook events and Kafka records are all checked by pydantic; every place that
turns a ``ValidationError`` into a message (a dead letter, a log line, an HTTP answer) uses
:func:`format_validation_errors`, so they read alike::

    flat_id: Field required; account_numbr: Extra inputs are not permitted
    data.MESSAGES: Input should be a valid list (2 problem(s))              (short=True)

Only pydantic's ``loc`` and ``msg`` are used: the rejected ``input`` may be long, or a secret (a
token in an event, a password in the environment), so it is never repeated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError


def format_validation_errors(
    errors: ValidationError | Iterable[Mapping[str, Any]],
    *,
    root: str = "payload",
    limit: int | None = None,
    short: bool = False,
) -> str:
    """``field: problem`` for each error, joined by ``; ``.

    ``errors`` is a ``ValidationError`` or its ``errors()`` list (FastAPI's ``RequestValidationError``
    gives only the list). ``root`` names the whole object when an error has no location. ``limit``
    keeps the first few and says how many were left out; ``short`` gives only the first error and the
    count, for answers that must stay one line.
    """
    items = list(errors.errors() if isinstance(errors, ValidationError) else errors)
    parts = [f"{_where(item, root)}: {item.get('msg', 'invalid')}" for item in items]
    if not parts:
        return f"{root}: invalid"
    if short:
        return f"{parts[0]} ({len(parts)} problem(s))"
    if limit is not None and len(parts) > limit:
        return "; ".join(parts[:limit]) + f"; and {len(parts) - limit} more"
    return "; ".join(parts)


def _where(item: Mapping[str, Any], root: str) -> str:
    return ".".join(str(part) for part in item.get("loc", ())) or root


__all__ = ["format_validation_errors"]
