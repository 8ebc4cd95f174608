"""Running one method or a ``batch`` of them, and the ``time`` block of the envelope."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from sandbox.bitrix24 import app_lifecycle, crm, messaging, offline
from sandbox.bitrix24.forms import unflatten
from sandbox.bitrix24.limits import OperatingTime
from sandbox.bitrix24.state import ApiError, Context, ListResult, Portal

Handler = Callable[[Portal, dict[str, Any], Context], Any]
METHODS: dict[str, Handler] = {**crm.METHODS, **messaging.METHODS, **app_lifecycle.METHODS, **offline.METHODS}
BATCH_LIMIT = 50
_REF = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone().isoformat(timespec="seconds")


def time_block(start: float, finish: float, operating: float = 0.0, reset_at: float | None = None) -> dict:
    block = {
        "start": start,
        "finish": finish,
        "duration": finish - start,
        "processing": finish - start,
        "date_start": _iso(start),
        "date_finish": _iso(finish),
        "operating": operating,
    }
    block["operating_reset_at"] = reset_at if reset_at is not None else int(finish) + 600
    return block


class Dispatcher:
    def __init__(self, portal: Portal, operating: OperatingTime) -> None:
        self.portal = portal
        self.operating = operating
        self.extra_cost: dict[str, float] = {}  # seconds added per call (to reach the limit in tests)

    def run(self, method: str, params: dict[str, Any], ctx: Context) -> tuple[Any, dict]:
        """Run a non-batch method; raise :class:`ApiError` for error answers."""
        if method.startswith(messaging.APP_ONLY_PREFIXES) and not ctx.oauth:
            raise ApiError("WRONG_AUTH_TYPE", "Current authorization type is denied for this method", 403)
        handler = METHODS.get(method)
        if handler is None:
            raise ApiError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        if self.operating.exceeded(ctx.identity, method):
            raise ApiError("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429)
        start = time.time()
        try:
            result = handler(self.portal, params, ctx)
        finally:
            finish = time.time()
            self.operating.add(ctx.identity, method, finish - start + self.extra_cost.get(method, 0.0))
        used, reset_at = self.operating.used(ctx.identity, method)
        return result, time_block(start, finish, used, reset_at)

    def batch(self, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        commands: Any = params.get("cmd")
        as_list = isinstance(commands, list)
        if isinstance(commands, list):
            commands = {str(i): c for i, c in enumerate(commands)}
        if not isinstance(commands, dict) or not commands:
            raise ApiError("ERROR_ARGUMENT", "cmd is required")
        if len(commands) > BATCH_LIMIT:
            raise ApiError("ERROR_BATCH_LENGTH_EXCEEDED", f"Max batch length exceeded ({BATCH_LIMIT})")
        halt = str(params.get("halt", "0")) in ("1", "true", "Y")
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        totals: dict[str, int] = {}
        nexts: dict[str, int] = {}
        times: dict[str, Any] = {}
        for cid, command in commands.items():
            method, _, query = str(command).partition("?")
            method = method.strip().lower().removesuffix(".json")
            pairs = [(k, _substitute(v, results)) for k, v in parse_qsl(query, keep_blank_values=True)]
            try:
                if method == "batch":
                    raise ApiError(
                        "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", 405
                    )
                result, block = self.run(method, unflatten(pairs), ctx)
                self.portal.log_call(method, 200, "", ctx, batch=cid)
            except ApiError as exc:
                self.portal.log_call(method, exc.status, exc.code, ctx, batch=cid)
                errors[cid] = {"error": exc.code, "error_description": exc.description}
                if halt:
                    break
                continue
            if isinstance(result, ListResult):
                results[cid] = result.rows
                totals[cid] = result.total
                if result.next is not None:
                    nexts[cid] = result.next
            else:
                results[cid] = result
            times[cid] = block
        return {
            "result": _section(results, as_list),
            "result_error": _section(errors, as_list),
            "result_total": _section(totals, as_list),
            "result_next": _section(nexts, as_list),
            "result_time": _section(times, as_list),
        }


def _section(data: dict[str, Any], as_list: bool) -> Any:
    """PHP encodes an empty array as ``[]`` and a 0..n-1 keyed one as a list."""
    if not data:
        return []
    if as_list and list(data) == [str(i) for i in range(len(data))]:
        return list(data.values())
    return data


def _substitute(value: str, results: dict[str, Any]) -> str:
    """``$result[id][field]…`` -> the value; left as literal text when the source has no such value."""

    def repl(match: re.Match[str]) -> str:
        if match.group(1) not in results:
            return match.group(0)
        current: Any = results[match.group(1)]
        for key in re.findall(r"\[([^\]]*)\]", match.group(2)):
            if isinstance(current, list) and key.isdigit() and int(key) < len(current):
                current = current[int(key)]
            elif isinstance(current, dict) and key in current:
                current = current[key]
            else:
                return match.group(0)
        if isinstance(current, bool):
            return "1" if current else ""
        return str(current) if not isinstance(current, dict | list) else match.group(0)

    return _REF.sub(repl, value)
