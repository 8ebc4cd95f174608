"""Waiting on real servers and processes by polling what they show, never by fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery.result import AsyncResult

WAIT = 60.0  # long enough for a loaded two-core machine; a passing wait returns as soon as it can


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, message: str = "condition") -> Any:
    """Poll ``predicate`` every 0.1 s until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{message} not met within {timeout}s")


def wait_result(task_id: str, timeout: float = WAIT) -> Any:
    """The result of a task a worker runs; its exception is raised here."""
    return AsyncResult(task_id).get(timeout=timeout, propagate=True)


__all__ = ["WAIT", "wait_result", "wait_until"]
