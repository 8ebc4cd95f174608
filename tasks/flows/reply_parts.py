"""An operator reply longer than one RosDomofon message, as ordered parts.

The app's limit is not documented (``REPLY_MAX_LENGTH`` names it). The split is deterministic (the
same text always gives the same parts), so a redelivered task sends exactly the parts still missing,
each part bracketed by its own effect marker. Parts break at a line end, else at a space, else mid
word, and carry ``(i/n) `` in front so the subscriber reads them in order even if the app shows them
out of order; a reply that fits goes out as it is, without a number.
"""

from __future__ import annotations

MARK_ROOM = len("(999/999) ")


def split_reply(text: str, limit: int) -> list[str]:
    """``text`` in parts of at most ``limit`` characters each, numbered when there is more than one."""
    if len(text) <= limit:
        return [text]
    room = max(limit - MARK_ROOM, 1)
    chunks: list[str] = []
    rest = text
    while rest:
        if len(rest) <= room:
            chunks.append(rest)
            break
        cut = _break_at(rest, room)
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    total = len(chunks)
    return [f"({n}/{total}) {chunk}" for n, chunk in enumerate(chunks, 1)]


def _break_at(text: str, room: int) -> int:
    """Where to cut ``text`` within ``room`` characters: after a newline, else a space, else ``room``."""
    window = text[:room]
    for sep in ("\n", " "):
        at = window.rfind(sep)
        if at > room // 2:  # do not leave a tiny part for the sake of a word
            return at + 1
    return room


__all__ = ["split_reply"]
