"""Which Bitrix24 REST methods only read: those may be repeated after an ambiguous failure (a timeout
after the request left), everything else is a write that must be looked up first."""

from __future__ import annotations

import re

_READ = re.compile(
    r"(^|\.)(get|list|fields|status|findbycomm|info|search)$|\.list\.get$|^(profile|scope|methods)$"
)


def is_read(method: str) -> bool:
    """Reads may be repeated after an ambiguous failure; everything else is a write."""
    return bool(_READ.search(method.lower()))
