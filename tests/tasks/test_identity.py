"""The identity rule of a subscriber message (tasks.ingest.identity): what is one message, what is two."""

from __future__ import annotations

import json

from tasks.ingest.identity import HASH_PREFIX, fingerprint, identify

TOPIC = "MESSAGES_IN_demo"


def _value(text: str) -> bytes:
    return json.dumps(
        {"fromAbonent": {"id": 5, "phone": 79131112233}, "localizedPush": {"message": text}}
    ).encode()


def test_a_reused_offset_is_another_message() -> None:
    before = identify(TOPIC, 0, 7, 1_700_000_000_000, _value("привет"))
    after_reset = identify(TOPIC, 0, 7, 1_700_000_900_000, _value("другое"))
    same_text_later = identify(TOPIC, 0, 7, 1_700_000_900_000, _value("привет"))
    assert len({before.message_id, after_reset.message_id, same_text_later.message_id}) == 3
    assert before.position == after_reset.position == f"{TOPIC}:0:7"  # provenance, not identity


def test_a_producer_retry_duplicate_is_one_message() -> None:
    first = identify(TOPIC, 0, 7, 1_700_000_000_000, _value("да"))
    retried = identify(TOPIC, 1, 12, 1_700_000_000_000, _value("да"))  # same value and timestamp
    assert first.message_id == retried.message_id and first.fingerprint == retried.fingerprint
    assert first.position != retried.position


def test_the_same_words_written_twice_are_two_messages() -> None:
    once = identify(TOPIC, 0, 7, 1_700_000_000_000, _value("да"))
    again = identify(TOPIC, 0, 8, 1_700_000_004_000, _value("да"))
    assert once.message_id != again.message_id
    assert once.fingerprint == again.fingerprint  # same bytes: the id, not the hash, tells them apart


def test_the_id_names_topic_timestamp_and_value_hash() -> None:
    value = _value("x")
    identity = identify(TOPIC, 3, 9, 1_700_000_000_123, value)
    assert identity.message_id == f"{TOPIC}:1700000000123:{fingerprint(value)[:HASH_PREFIX]}"
    assert identity.fingerprint == fingerprint(value) and len(identity.fingerprint) == 64


def test_a_record_without_timestamp_falls_back_to_position_and_hash() -> None:
    value = _value("без времени")
    for missing in (None, 0, -1):
        identity = identify(TOPIC, 1, 4, missing, value)
        assert identity.message_id == f"{TOPIC}:1:4:{fingerprint(value)[:HASH_PREFIX]}"
    # A reused offset holding other bytes is still told apart; the same record read again is not.
    assert (
        identify(TOPIC, 1, 4, None, _value("other")).message_id
        != identify(TOPIC, 1, 4, None, value).message_id
    )
    assert identify(TOPIC, 1, 4, None, value) == identify(TOPIC, 1, 4, None, value)
