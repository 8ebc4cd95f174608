"""``batch``: up to 50 commands per request, chunked automatically.

Commands run in order on the portal; ``$result[id][…]`` references work inside one request only, so a
reference to a command of an earlier chunk is resolved here from that chunk's result before sending.
A batch is never retried: some commands may already have committed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from clients.bitrix24.methods import is_read
from schemas.bitrix24 import BatchResult, BatchSection

if TYPE_CHECKING:
    from schemas.bitrix24 import B24Envelope

BATCH_LIMIT = 50
Command = str | tuple[str, Mapping[str, Any] | None]
_REF = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])*)")


def build_query(params: Mapping[str, Any], prefix: str = "") -> str:
    """PHP-style bracket query (``fields[PHONE][0][VALUE]=…``), each value URL-encoded once."""
    parts: list[str] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}[{k}]" if key else str(k))
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        else:
            text = "" if value is None else ("Y" if value is True else "N" if value is False else str(value))
            parts.append(f"{quote(key, safe='[]')}={quote(text, safe='')}")

    walk(params, prefix)
    return "&".join(parts)


def command_string(command: Command) -> str:
    if isinstance(command, str):
        return command
    method, params = command
    query = build_query(params or {})
    return f"{method}?{query}" if query else method


def _resolve(text: str, done: Mapping[str, Any]) -> str:
    """Substitute references to commands of earlier chunks with their actual values."""

    def repl(match: re.Match[str]) -> str:
        if match.group(1) not in done:
            return match.group(0)
        value: Any = done[match.group(1)]
        for key in re.findall(r"\[([^\]]*)\]", match.group(2)):
            if isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            elif isinstance(value, Mapping) and key in value:
                value = value[key]
            else:
                return match.group(0)
        return quote(str(value), safe="")

    return _REF.sub(repl, text)


class BatchMixin:
    if TYPE_CHECKING:

        def call_raw(
            self, method: str, params: dict[str, Any] | None = None, *, write: bool | None = None
        ) -> B24Envelope: ...

    def batch(self, commands: Mapping[str, Command] | Sequence[Command], halt: bool = False) -> BatchResult:
        """Run ``commands`` (id -> ``"method?query"`` or ``(method, params)``), 50 per request.

        Per-command failures come back in ``BatchResult.errors``; errors of the batch call itself
        (auth, rate limit, transport) raise. With ``halt`` the first failing chunk stops the rest.
        """
        items = (
            list(commands.items())
            if isinstance(commands, Mapping)
            else [(str(i), c) for i, c in enumerate(commands)]
        )
        outcome = BatchResult()
        for start in range(0, len(items), BATCH_LIMIT):
            chunk = {
                cid: _resolve(command_string(cmd), outcome.results)
                for cid, cmd in items[start : start + BATCH_LIMIT]
            }
            read_only = all(_is_read_cmd(c) for c in chunk.values())
            envelope = self.call_raw("batch", {"halt": 1 if halt else 0, "cmd": chunk}, write=not read_only)
            outcome.merge(BatchSection.model_validate(envelope.result or {}))
            if halt and outcome.errors:
                break
        return outcome


def _is_read_cmd(command: str) -> bool:
    return is_read(command.split("?", 1)[0])


__all__ = ["BATCH_LIMIT", "BatchMixin", "build_query", "command_string"]
