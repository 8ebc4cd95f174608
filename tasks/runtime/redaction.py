"""Masks secrets in anything we log or show (defence in depth: tasks never receive secrets).

Keys that look like credentials have their values replaced; free text has Bitrix24 webhook secrets
(``/rest/<user>/<secret>/``) and ``token=...`` style parameters masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(
    r"pass(word)?|secret|token|auth|api[_-]?key|credential|webhook_url|cookie|signature", re.IGNORECASE
)
_WORDS = r"[A-Za-z_\-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|credential|authorization)[A-Za-z_\-]*"
_TEXT_PATTERNS = [
    # Bitrix24 incoming-webhook URL: the path segment after the user id is the secret.
    (re.compile(r"(/rest/\d+/)[A-Za-z0-9_]{4,}"), r"\1" + MASK),
    # 'client_secret': 'value' / "token": "value" (reprs and JSON).
    (
        re.compile(
            r"""((?:["'])?(?:""" + _WORDS + r"""|auth)(?:["'])?\s*[:=]\s*)(["'])(?:(?!\2).)*\2""", re.I
        ),
        r"\1\2" + MASK + r"\2",
    ),
    # key=value in query strings and form bodies (access_token=..., auth=...).
    (re.compile(r"(\b(?:" + _WORDS + r"|auth)=)[^\"'&\s,}]+", re.IGNORECASE), r"\1" + MASK),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+", re.IGNORECASE), r"\1" + MASK),
]


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with credential-looking keys masked, recursively (dicts, lists, text)."""
    if _depth > 20:
        return value
    if isinstance(value, Mapping):
        return {k: (MASK if is_secret_key(k) and v else redact(v, _depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v, _depth + 1) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text
