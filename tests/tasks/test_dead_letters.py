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
    redis_client.delete(dead_letters.ITEMS_KEY, dead_letters.INDEX_KEY)
    yield dead_letters.store()
    redis_client.delete(dead_letters.ITEMS_KEY, dead_letters.INDEX_KEY)


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
