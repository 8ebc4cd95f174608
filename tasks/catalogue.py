"""The task catalogue: every public task name, its queue and the JSON Schema of its payload.

Built from the ``@operation`` registry after importing every task module the worker imports, so a
task added anywhere (operations, flows, reconciliation) appears without editing a list here.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel

from tasks.errors import UnknownTaskError
from tasks.runtime.operation import REGISTRY, OperationSpec


def load() -> dict[str, OperationSpec]:
    """Import every task module and return the registry, sorted by name."""
    from tasks.runtime.app import task_modules

    for module in task_modules():
        importlib.import_module(module)
    return dict(sorted(REGISTRY.items()))


def spec(name: str) -> OperationSpec:
    specs = load()
    if name not in specs:
        raise UnknownTaskError(name)
    return specs[name]


def payload_model(name: str) -> type[BaseModel]:
    return spec(name).payload


def describe(item: OperationSpec) -> dict[str, Any]:
    """A JSON-ready description of one task (what `rdb24 tasks --json` prints)."""
    return {
        "name": item.name,
        "queue": item.queue.value,
        "description": item.description,
        "payload_schema": item.payload.model_json_schema(),
        "result_schema": item.result.model_json_schema(mode="serialization") if item.result else None,
        "retry": item.retry.declared(),  # None: the setting of that name decides (retry_policy.SETTING_OF)
    }


def catalogue() -> list[dict[str, Any]]:
    return [describe(item) for item in load().values()]
