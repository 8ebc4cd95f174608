"""Bare Celery no-op tasks for the ingest benchmark's baseline chain (loaded into the worker with -I)."""

from __future__ import annotations

from typing import Any

from tasks.runtime.app import app


@app.task(name="bench.noop_step", acks_late=True)
def noop_step(previous: Any = None, **payload: Any) -> dict[str, Any]:
    """Returns what it got: the cheapest possible chain step on the same worker and broker."""
    return dict(payload) if payload else dict(previous or {})
