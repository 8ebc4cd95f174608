"""loguru as the one log sink for every process (worker, beat, CLI, webhook).

Standard ``logging`` (Celery, kombu, urllib3, uvicorn) is routed into loguru by an intercept handler.
Each record carries the task context bound by the base task (``task_name``, ``task_id``, ``root_id``)
and, for message flows, ``message_id`` (topic, record timestamp and value hash:
:mod:`tasks.ingest.identity`), so one message can be followed across a chain. A patcher masks
secrets in messages and extras as defence in depth.
``enqueue=True`` makes the sink safe for prefork children (records go through a queue to one writer);
``diagnose=False`` keeps variable values (possibly secrets) out of tracebacks.
"""

from __future__ import annotations

import inspect
import logging
import sys
from typing import TYPE_CHECKING, Any

from loguru import logger

from tasks.runtime.redaction import redact, redact_text

if TYPE_CHECKING:
    from loguru import Record

    from tasks.settings import Settings

CONTEXT_KEYS = ("task_name", "task_id", "root_id", "message_id")
_TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
    "<cyan>{name}</cyan> | {extra[_context]}<level>{message}</level>"  # loguru adds "\n{exception}"
)


class InterceptHandler(logging.Handler):
    """Sends standard-library log records to loguru, keeping level and caller."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def _patch(record: Record) -> None:
    record["message"] = redact_text(record["message"])
    extra = record["extra"]
    for key, value in list(extra.items()):
        if key != "_context":
            extra[key] = redact({key: value})[key]
    context = " ".join(f"{key}={extra[key]}" for key in CONTEXT_KEYS if extra.get(key))
    extra["_context"] = f"[{context}] " if context else ""


def console(level: str = "INFO") -> None:
    """A plain stderr sink for command-line tools, without loguru's defaults that print every local
    variable of a traceback (``diagnose``), where a URL with a password or a token may sit."""
    logger.remove()
    logger.add(sys.stderr, level=level.upper(), backtrace=False, diagnose=False)


def configure(
    settings: Settings | None = None, *, level: str | None = None, json: bool | None = None
) -> None:
    """(Re)configure logging for this process; call once at start (Celery's ``setup_logging``)."""
    if settings is not None:
        level = level or settings.log_level
        json = settings.log_json if json is None else json
    level = (level or "INFO").upper()
    logger.remove()
    logger.configure(patcher=_patch, extra={"_context": ""})
    options: dict[str, Any] = {"level": level, "enqueue": True, "backtrace": False, "diagnose": False}
    if json:
        logger.add(sys.stderr, serialize=True, **options)
    else:
        logger.add(sys.stderr, format=_TEXT_FORMAT, colorize=False, **options)
    logging.basicConfig(handlers=[InterceptHandler()], level=logging.getLevelName(level), force=True)
    for name in ("celery", "kombu", "amqp", "urllib3", "uvicorn", "uvicorn.access", "uvicorn.error"):
        std = logging.getLogger(name)
        std.handlers = []
        std.propagate = True
