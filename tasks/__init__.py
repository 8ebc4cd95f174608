"""The task layer: ``celery -A tasks worker|beat|flower|inspect`` finds the Celery app as ``tasks.app``."""

from __future__ import annotations

from tasks.runtime.app import app

__all__ = ["app"]
