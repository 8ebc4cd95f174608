"""``rdb24 dlq replay``: what replaying each kind of dead letter means.

A failed task is sent again by name with its original payload, marked as a replay of its letter; a
failed step of a subscriber message's chain (lookup, contact, post) is sent with every step after it
and the message enters the in-flight ledger again (:func:`tasks.flows.incoming_message.resume_chain`),
so the message is posted, not only its contact created; an unreadable Kafka record goes back to its
source topic (:mod:`tasks.ingest.replay`). The letter is
deleted only after the replay was accepted, so a replay interrupted by Ctrl-C or a kill leaves the
letter in place, and the replay's task id is derived from the letter id, so running it again
publishes the same task again rather than a second piece of work.
"""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger

from schemas.dead_letters import DeadLetter, DeadLetterKind
from tasks.errors import DeadLetterNotFound
from tasks.runtime.headers import MESSAGE_HEADER, REPLAY_HEADER
from tasks.state.dead_letters import DeadLetterStore

Replayer = Callable[[DeadLetter], str]
_replayers: dict[str, Replayer] = {}


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


def replay(store: DeadLetterStore, letter_id: str) -> str:
    """Publish the letter again, then delete it; returns the new task (or record) id."""
    letter = store.get(letter_id)
    kind = str(letter.kind)
    replayer = _replayers.get(kind, DEFAULT_REPLAYERS.get(kind))
    if replayer is None:
        raise ValueError(f"no replayer registered for dead letters of kind {letter.kind!r}")
    new_id = replayer(letter)
    store.delete(letter_id)
    logger.info("dead letter {} replayed as {}", letter_id, new_id)
    return new_id


def replay_all(store: DeadLetterStore, *, name: str | None = None) -> dict[str, str]:
    """Replay every letter (optionally of one task name); returns {dead letter id: new id}."""
    result: dict[str, str] = {}
    for letter in store.list(limit=store.count() or 1, name=name):
        try:
            result[letter.id] = replay(store, letter.id)
        except DeadLetterNotFound:
            continue
    return result
