"""Payloads and results of the per-operation tasks (``rosdomofon.*``, ``bitrix24.*``).

Payloads are ids and JSON only, never secrets or credentials; unknown fields are refused so a typo
in a producer's payload fails with a field-level error instead of being silently dropped.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class OperationPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoPayload(OperationPayload):
    """For operations without arguments."""


class OperationResult(BaseModel):
    """A yes/no outcome of a write (``True``: the service accepted it)."""

    ok: bool


__all__ = ["NoPayload", "OperationPayload", "OperationResult"]
