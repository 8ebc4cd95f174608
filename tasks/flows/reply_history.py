"""The subscriber's support history, read to recognise our own reply by its id, never by its text.

``outgoing_ids`` is read before a reply's first send; ``own_send`` after an ambiguous one (timeout,
5xx, kill between "started" and "done"): an outgoing message that was not there before and carries our
text is our send. The window is the newest ``HISTORY_WINDOW`` messages: replies of one dialog are sent
one at a time (``tasks.state.reply_order``), so little can come between the two reads. The same
history serves both transports: the REST send and the Kafka ``MESSAGES_OUT`` record both land in it.
"""

from __future__ import annotations

from schemas.rosdomofon import Message
from tasks.runtime.resources import rosdomofon_api

CHANNEL = "support"
HISTORY_WINDOW = 50


def _outgoing(abonent_id: int) -> list[Message]:
    page = rosdomofon_api().get_abonent_messages(abonent_id, channel=CHANNEL, page=0, size=HISTORY_WINDOW)
    return [item for item in page.content if not item.incoming]


def outgoing_ids(abonent_id: int) -> list[str]:
    """Ids of the outgoing support messages the subscriber has now (newest ``HISTORY_WINDOW``)."""
    return [str(item.id) for item in _outgoing(abonent_id)]


def own_send(abonent_id: int, text: str, seen_before: set[str]) -> Message | None:
    """Our send, if it went out: a message new since ``seen_before`` with our text (oldest such)."""
    new = [item for item in _outgoing(abonent_id) if str(item.id) not in seen_before and item.message == text]
    return new[-1] if new else None  # history is newest first


__all__ = ["CHANNEL", "HISTORY_WINDOW", "outgoing_ids", "own_send"]
