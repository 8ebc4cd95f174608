"""What a reply's send saw before it went out: the marker that lets a retry recognise its own send.

RosDomofon's ``POST /messages`` returns the new message's id, but only when the answer arrives: after
a timeout, a 5xx or a kill between "started" and "done" that id is unknown. Matching the subscriber's
history by text cannot tell our new "Спасибо" from the one an operator sent yesterday. So, before the
send, the reply records the ids of the outgoing messages already in the subscriber's support history
(``rdb24:reply:seen:<reply key>``). A retry then looks only at outgoing messages whose id is *not* in
that set: one of them carrying our text can only be our own send (replies of one dialog are sent one
at a time, ``tasks.state.reply_order``). Without the record (it expired, or was never written) the
retry cannot know, sends again, and the flow counts it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import redis

from tasks.state import keys

SEEN_PREFIX = keys.REPLY_SEEN_PREFIX


def seen_key(reply_key: str) -> str:
    return f"{SEEN_PREFIX}:{reply_key}"


def remember_seen(client: redis.Redis, reply_key: str, ids: Iterable[int | str], *, ttl: int) -> None:
    """Store the outgoing ids present before this reply's first send (kept for every later retry)."""
    client.set(seen_key(reply_key), json.dumps(sorted(str(i) for i in ids)), ex=ttl)


def recall_seen(client: redis.Redis, reply_key: str) -> set[str] | None:
    """The ids seen before the first send, or None when no record survives (the send is unknowable)."""
    raw = client.get(seen_key(reply_key))
    if raw is None:
        return None
    return set(json.loads(raw))


def forget_seen(client: redis.Redis, reply_key: str) -> None:
    client.delete(seen_key(reply_key))


__all__ = ["forget_seen", "recall_seen", "remember_seen", "seen_key"]
