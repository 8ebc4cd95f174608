"""Flower settings from ``Settings``: basic auth (its API is off without auth), port, and task
arguments shown redacted (tasks take ids and JSON only; this is defence in depth)."""

from __future__ import annotations

from typing import Any

from loguru import logger

from tasks.runtime.redaction import redact, redact_text


def format_task(task: Any) -> Any:
    """Flower's ``format_task`` hook: mask credential-looking values in shown args, kwargs, result."""
    for attribute in ("args", "kwargs", "result"):
        value = getattr(task, attribute, None)
        if isinstance(value, str):
            setattr(task, attribute, redact_text(value))
        elif value is not None:
            setattr(task, attribute, redact(value))
    return task


def configure() -> None:
    from tornado.options import options

    from tasks.settings import get_settings

    settings = get_settings()
    password = settings.flower_password.get_secret_value()
    if settings.flower_user and password:
        options.basic_auth = [f"{settings.flower_user}:{password}"]
    else:
        logger.warning("FLOWER_PASSWORD is not set: Flower runs without auth and its API stays disabled")
    options.port = settings.flower_port
    options.format_task = format_task
