"""The dead-letter store on a real Redis: add/list/get/replay/delete, generic kinds, CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from click.testing import CliRunner

from schemas.dead_letters import DeadLetter
from tasks import replay
from tasks.cli import main
from tasks.errors import DeadLetterNotFound
from tasks.state import dead_letters
from tasks.state.dead_letters import DeadLetterStore

pytestmark = pytest.mark.usefixtures("on_session_db")


@pytest.fixture
def store(celery_app: Celery, redis_client: redis.Redis) -> Iterator[DeadLetterStore]:
    keys = (dead_letters.ITEMS_KEY, dead_letters.INDEX_KEY, dead_letters.TRIMMABLE_KEY)
    redis_client.delete(*keys)
    yield dead_letters.store()
    redis_client.delete(*keys)


def letter(name: str, **extra: object) -> DeadLetter:
    fields: dict = {
        "name": name,
        "payload": {"id": 1},
        "reason": "not_retryable",
        "error": "E: boom",
        **extra,
    }
    return DeadLetter(**fields)


def test_add_list_get_delete_newest_first_with_secrets_masked(store: DeadLetterStore) -> None:
    first = store.add(letter("a.one", payload={"id": 1, "client_secret": "s3"}))
    second = store.add(letter("b.two"))
    assert [x.id for x in store.list()] == [second.id, first.id]
    assert [x.id for x in store.list(name="a.one")] == [first.id]
    assert store.get(first.id).payload == {"id": 1, "client_secret": "***"}
    assert store.delete(first.id) and not store.delete(first.id)
    with pytest.raises(DeadLetterNotFound):
        store.get(first.id)
    assert store.count() == 1


def test_other_kinds_replay_through_their_registered_replayer(store: DeadLetterStore) -> None:
    replayed: list[DeadLetter] = []

    def reproduce(item: DeadLetter) -> str:
        replayed.append(item)
        return "MESSAGES_IN_X:0:42"

    replay.register_replayer("test_record", reproduce)
    stored = store.add(
        letter("MESSAGES_IN_X", kind="test_record", payload="raw bytes", source={"offset": 42})
    )
    assert replay.replay(store, stored.id) == "MESSAGES_IN_X:0:42"
    assert replayed[0].payload == "raw bytes" and store.count() == 0


def test_a_failed_replay_keeps_the_record(store: DeadLetterStore) -> None:
    def broken(item: DeadLetter) -> str:
        raise ConnectionError("broker down")

    replay.register_replayer("flaky_record", broken)
    stored = store.add(letter("x", kind="flaky_record"))
    with pytest.raises(ConnectionError):
        replay.replay(store, stored.id)
    assert store.get(stored.id).id == stored.id
    unknown = store.add(letter("y", kind="no_such_kind"))
    with pytest.raises(ValueError, match="no replayer"):
        replay.replay(store, unknown.id)
    assert store.get(unknown.id).id == unknown.id


def test_the_store_trims_the_oldest_beyond_its_limit(celery_app: Celery, store: DeadLetterStore) -> None:
    small = DeadLetterStore(store.client, max_items=3)
    ids = [small.add(letter(f"t.{i}")).id for i in range(5)]
    assert [x.id for x in small.list()] == list(reversed(ids[2:]))


def test_cli_list_and_show(store: DeadLetterStore) -> None:
    stored = store.add(letter("rosdomofon.block_account", payload={"account_number": "42"}))
    runner = CliRunner()
    listed = runner.invoke(main, ["dlq", "list"])
    assert (
        listed.exit_code == 0 and stored.id in listed.output and "rosdomofon.block_account" in listed.output
    )
    shown = runner.invoke(main, ["dlq", "show", stored.id])
    assert shown.exit_code == 0 and json.loads(shown.output)["payload"] == {"account_number": "42"}
    missing = runner.invoke(main, ["dlq", "show", "nope"])
    assert missing.exit_code != 0 and "no dead letter nope" in missing.output
    assert runner.invoke(main, ["dlq", "replay"]).exit_code != 0  # an id or --all is required


def test_cli_replay_takes_one_id_or_all(store: DeadLetterStore) -> None:
    replay.register_replayer("cli_record", lambda item: f"again:{item.name}")
    one = store.add(letter("one", kind="cli_record"))
    two = store.add(letter("two", kind="cli_record"))
    runner = CliRunner()
    assert runner.invoke(main, ["dlq", "replay", one.id, "--all"]).exit_code != 0  # not both
    assert store.count() == 2
    single = runner.invoke(main, ["dlq", "replay", one.id])
    assert single.exit_code == 0 and single.output == f"{one.id} -> again:one\n"
    everything = runner.invoke(main, ["dlq", "replay", "--all"])
    assert everything.exit_code == 0 and everything.output == f"{two.id} -> again:two\n"
    assert store.count() == 0


@pytest.fixture
def small_store(redis_client: redis.Redis) -> Iterator[DeadLetterStore]:
    from tasks.runtime import metrics

    keys = (dead_letters.ITEMS_KEY, dead_letters.INDEX_KEY, dead_letters.TRIMMABLE_KEY)
    redis_client.delete(*keys)
    metrics.use_redis(redis_client)
    yield DeadLetterStore(redis_client, max_items=3)
    metrics.use_redis(None)
    redis_client.delete(*keys)


def test_letters_that_carry_a_message_are_never_trimmed(small_store: DeadLetterStore) -> None:
    """Above DEAD_LETTER_MAX only letters without a message go; a full store counts, drops nothing."""
    from tasks.runtime import metrics

    chain_step = small_store.add(letter("flows.post_to_chat", source={"message_id": "T:1:ab"}))
    record = small_store.add(
        letter("MESSAGES_IN_X", kind="kafka_record", payload="{broken", source={"offset": 1})
    )
    plain = [small_store.add(letter("reconcile.apply")) for _ in range(2)]
    # Four letters, bound three: the oldest letter without a message went, not the older message letters.
    ids = {x.id for x in small_store.list(limit=10)}
    assert ids == {chain_step.id, record.id, plain[1].id}
    assert not small_store.full()

    full_before = metrics.DEAD_LETTERS_OVER_LIMIT.value()
    reply = small_store.add(letter("flows.deliver_operator_reply", source={"message_id": "reply:1:2"}))
    more = small_store.add(letter("flows.lookup_account", source={"message_id": "T:2:cd"}))
    ids = {x.id for x in small_store.list(limit=10)}
    assert ids == {chain_step.id, record.id, reply.id, more.id}  # the last plain one trimmed, no message
    assert small_store.full()
    assert metrics.DEAD_LETTERS_OVER_LIMIT.value() - full_before == 1  # only `more` found nothing to trim
    assert small_store.delete(more.id) and small_store.delete(reply.id)
    assert not small_store.full()


def test_a_late_replay_whose_post_cannot_be_checked_needs_force(store: DeadLetterStore) -> None:
    """Older than EFFECT_MARKER_TTL, no record timestamp: the post step could not tell it already went in."""
    from datetime import timedelta

    old = dead_letters.now() - timedelta(days=15)
    message = {"message_id": "T:1:ab", "abonent_id": 5, "phone": "79131112233", "text": "да"}
    blind = store.add(
        letter("flows.post_to_chat", payload={"message": message, "contact_id": 1}, created_at=old)
    )
    runner = CliRunner()
    refused = runner.invoke(main, ["dlq", "replay", blind.id])
    assert refused.exit_code != 0 and "--force" in refused.output
    assert store.get(blind.id).id == blind.id  # kept for a human
    refused_all: dict[str, str] = {}
    assert replay.replay_all(store, refused=refused_all) == {}
    assert list(refused_all) == [blind.id]

    # With the record timestamp the post step sees it is late and checks the chat: no force needed.
    dated = letter("flows.post_to_chat", payload={"message": {**message, "sent_at": int(old.timestamp())}})
    assert (
        replay.late_replay_risk(dated.model_copy(update={"created_at": old}), marker_ttl=14 * 86400) is None
    )
    # Young letters and letters without a message are never in question.
    assert (
        replay.late_replay_risk(letter("flows.post_to_chat", payload={"message": message}), 14 * 86400)
        is None
    )
    assert replay.late_replay_risk(letter("reconcile.apply", created_at=old), 14 * 86400) is None
    assert replay.late_replay_risk(blind, 14 * 86400) is not None
