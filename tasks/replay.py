"""``rdb24 dlq replay``: what replaying each kind of dead letter means.

A failed task is sent again by name with its original payload, marked as a replay of its letter; a
failed step of a subscriber message's chain (lookup, contact, post) is sent with every step after it
and the message enters the in-flight ledger again (:func:`tasks.flows.incoming_message.resume_chain`),
so the message is posted, not only its contact created; an unreadable Kafka record goes back to its
source topic (:mod:`tasks.ingest.replay`). The letter is
deleted only after the replay was accepted, so a replay interrupted by Ctrl-C or a kill leaves the
letter in place, and the replay's task id is derived from the letter id, so running it again
publishes the same task again rather than a second piece of work.

A late replay is careful: effect markers live ``EFFECT_MARKER_TTL`` (14 days), so a letter of a
subscriber message older than that may replay a post that already went in and whose marker expired.
When the message's record timestamp is known, the post step itself checks the chat first
(:func:`tasks.flows.chat.older_than_markers`, as after an ambiguous post); when it is not, the replay
is refused with :class:`LateReplayError` unless forced (``rdb24 dlq replay --force``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from schemas.dead_letters import DeadLetter, DeadLetterKind
from tasks.errors import DeadLetterNotFound, LateReplayError
from tasks.runtime.headers import MESSAGE_HEADER, REPLAY_HEADER
from tasks.state.dead_letters import DeadLetterStore

Replayer = Callable[[DeadLetter], str]
_replayers: dict[str, Replayer] = {}


def late_replay_risk(letter: DeadLetter, marker_ttl: float, now: float | None = None) -> str | None:
    """Why replaying the letter could post its message twice, or None when it is safe.

    Safe: a letter that carries no subscriber message; one younger than the markers (the steps
    recognise their own effects); one whose message has a record timestamp (the post step sees it is
    late and checks the chat before posting).
    """
    message: Any = letter.payload.get("message") if isinstance(letter.payload, dict) else None
    if str(letter.kind) != DeadLetterKind.TASK or not isinstance(message, dict):
        return None
    age = (time.time() if now is None else now) - letter.created_at.timestamp()
    if age < marker_ttl - min(3600.0, marker_ttl / 10) or message.get("sent_at"):
        return None
    return (
        f"dead letter {letter.id} is {age / 86400:.1f} days old, older than EFFECT_MARKER_TTL, and its "
        "message has no record timestamp, so whether it was posted cannot be checked; replay with --force "
        "to post it anyway"
    )


def register_replayer(kind: str, replayer: Replayer) -> None:
    """Teach ``replay`` a new kind of letter; the replayer returns the id of what it published."""
    _replayers[kind] = replayer


def replay_task_id(letter: DeadLetter) -> str:
    return f"replay:{letter.id}"


def _replay_task(letter: DeadLetter) -> str:
    """Send the original task by name, original payload, to its queue, marked as a replay.

    A message chain's step takes the rest of its chain along.
    """
    from tasks.flows.incoming_message import resume_chain
    from tasks.runtime.app import app
    from tasks.runtime.queues import queue_for

    payload = letter.payload if isinstance(letter.payload, dict) else {}
    headers = {REPLAY_HEADER: letter.id}
    message_id = letter.source.get("message_id")
    if message_id:
        headers[MESSAGE_HEADER] = message_id
    resumed = resume_chain(letter.name, payload, replay_task_id(letter), headers)
    if resumed is not None:
        return resumed
    result = app.send_task(
        letter.name,
        kwargs=payload,
        queue=queue_for(letter.name).value,
        headers=headers,
        task_id=replay_task_id(letter),
    )
    return str(result.id)


def _replay_kafka_record(letter: DeadLetter) -> str:
    from tasks.ingest.replay import replay_kafka_record

    return replay_kafka_record(letter)


DEFAULT_REPLAYERS: dict[str, Replayer] = {
    DeadLetterKind.TASK: _replay_task,
    DeadLetterKind.KAFKA_RECORD: _replay_kafka_record,
}


def _marker_ttl() -> float:
    from tasks.settings import get_settings

    return float(get_settings().effect_marker_ttl)


def replay(store: DeadLetterStore, letter_id: str, *, force: bool = False) -> str:
    """Publish the letter again, then delete it; returns the new task (or record) id.

    Raises :class:`LateReplayError` for a late letter whose post cannot be checked, unless ``force``.
    """
    letter = store.get(letter_id)
    risk = None if force else late_replay_risk(letter, _marker_ttl())
    if risk is not None:
        raise LateReplayError(risk)
    kind = str(letter.kind)
    replayer = _replayers.get(kind, DEFAULT_REPLAYERS.get(kind))
    if replayer is None:
        raise ValueError(f"no replayer registered for dead letters of kind {letter.kind!r}")
    new_id = replayer(letter)
    store.delete(letter_id)
    logger.info("dead letter {} replayed as {}", letter_id, new_id)
    return new_id


def replay_all(
    store: DeadLetterStore,
    *,
    name: str | None = None,
    force: bool = False,
    refused: dict[str, str] | None = None,
) -> dict[str, str]:
    """Replay every letter (optionally of one task name); returns {dead letter id: new id}.

    Late letters that need ``force`` are left in the store and, with ``refused``, listed there.
    """
    result: dict[str, str] = {}
    for letter in store.list(limit=store.count() or 1, name=name):
        try:
            result[letter.id] = replay(store, letter.id, force=force)
        except DeadLetterNotFound:
            continue
        except LateReplayError as exc:
            logger.warning("{}", exc)
            if refused is not None:
                refused[letter.id] = str(exc)
    return result
