"""Flower settings from ``Settings``: basic auth, port, and task arguments shown redacted (tasks take ids
and JSON only; this is defence in depth).

Flower refuses to start without ``FLOWER_PASSWORD``: its pages show subscribers' phones and message
texts, and an unauthenticated Flower shows them to anyone who reaches the port. (``rdb24 up`` generates
a password when none is configured and prints it.)"""

from __future__ import annotations

from typing import Any

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
    if not settings.flower_user or not password:
        raise SystemExit(
            "rdb24: FLOWER_PASSWORD (and FLOWER_USER) must be set: Flower shows subscribers' phones and "
            "messages, so it does not start without basic auth"
        )
    options.basic_auth = [f"{settings.flower_user}:{password}"]
    options.port = settings.flower_port
    options.format_task = format_task
