"""PHP-style bracket encoding, as the portal parses query strings and form bodies.

Written from the facts doc, independent of ``schemas`` so the simulator catches our mistakes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

_NAME = re.compile(r"^([^\[\]]*)((?:\[[^\[\]]*\])*)$")


def unflatten(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """``a[b][0]=x`` pairs -> nested dicts; integer-keyed maps become lists (as PHP arrays encode)."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _NAME.match(key)
        if match is None or not match.group(1):
            root[key] = value
            continue
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        last = parts[-1]
        if last == "":
            last = str(len(node))
        node[last] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        keys = list(node)
        if keys and all(k.isdigit() for k in keys) and sorted(int(k) for k in keys) == list(range(len(keys))):
            return [node[str(i)] for i in range(len(keys))]
    return node


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested data -> bracket pairs (for the form-encoded events the portal POSTs)."""
    out: list[tuple[str, str]] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{key}[{k}]" if key else str(k))
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        elif value is None:
            out.append((key, ""))
        elif isinstance(value, bool):
            out.append((key, "Y" if value else "N"))
        else:
            out.append((key, str(value)))

    walk(data, prefix)
    return out


def encode(pairs: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs)
