"""The receiver stores each event durably before its 200 and forwards it once Redis takes it.

Real servers: the receiver app under uvicorn on a free port, a real Redis (or a port where nothing
listens, for "Redis down"), real SQLite files. Only the publish step is our own fake (``Enqueue`` is
the receiver's own seam), so a test can see what was forwarded, and when.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import uvicorn

from sandbox.stack.embedded import free_port
from schemas.flows import OperatorReplyPayload
from tasks.state.dead_letters import DeadLetterStore
from tasks.webhook.receiver import EVENTS_PATH, create_app
from tasks.webhook.spool import Spool, orphans

TOKEN = "app-token-for-the-spool-tests"
pytestmark = pytest.mark.timeout(60)


class Published:
    """The fake publish step: records (task id, chat id); optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.items: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, payload: OperatorReplyPayload, task_id: str) -> None:
        time.sleep(self.delay)
        with self._lock:
            self.items.append((task_id, payload.chat_id))

    def task_ids(self) -> list[str]:
        with self._lock:
            return [task_id for task_id, _ in self.items]


def event(chat_id: int, *message_ids: int) -> dict[str, str]:
    form = {
        "event": "ONIMCONNECTORMESSAGEADD",
        "data[CONNECTOR]": "rosdomofon",
        "data[LINE]": "1",
        "auth[application_token]": TOKEN,
    }
    for i, message_id in enumerate(message_ids):
        form |= {
            f"data[MESSAGES][{i}][im][chat_id]": str(chat_id),
            f"data[MESSAGES][{i}][im][message_id]": str(message_id),
            f"data[MESSAGES][{i}][message][user_id]": "1",
            f"data[MESSAGES][{i}][message][text]": f"ответ {message_id}",
            f"data[MESSAGES][{i}][chat][id]": "abonent-1",
        }
    return form


@contextmanager
def receiver(client: redis.Redis, spool_dir: Path, enqueue: Callable[..., Any]) -> Iterator[str]:
    """The receiver app served by uvicorn in a thread (lifespan on: spool and drain thread)."""
    port = free_port()
    app = create_app(application_token=TOKEN, redis_client=client, spool_dir=spool_dir, enqueue=enqueue)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "receiver did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def redis_down() -> redis.Redis:
    """A client of a port where nothing listens: every call fails at once, as with Redis stopped."""
    return redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)


def test_a_live_spool_is_not_adopted_and_a_dead_ones_rows_survive_in_order(tmp_path: Path) -> None:
    first = Spool.for_this_process(tmp_path)
    first.store([("reply:1:1", "{}"), ("reply:1:2", "{}")])
    first.store([("reply:1:3", "{}")])
    assert list(orphans(tmp_path, tmp_path / "other.sqlite3")) == []  # held by a live owner
    first.close()
    (adopted,) = orphans(tmp_path, tmp_path / "other.sqlite3")
    try:
        assert [row.task_id for row in adopted.oldest()] == ["reply:1:1", "reply:1:2", "reply:1:3"]
    finally:
        adopted.close()


def test_reply_arriving_while_redis_is_down_is_kept_and_forwarded_by_the_next_receiver(
    tmp_path: Path, redis_client: redis.Redis, redis_down: redis.Redis, unique: str
) -> None:
    chat = int(unique[:6], 16)
    down = Published()
    with receiver(redis_down, tmp_path, down) as url:
        answer = requests.post(url + EVENTS_PATH, data=event(chat, 11, 12), timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["tasks"] == [f"reply:{chat}:11", f"reply:{chat}:12"]
        health = requests.get(url + "/health", timeout=10)
        assert health.status_code == 200  # still taking events: they wait in the spool
        assert health.json()["redis"].startswith("unavailable") and health.json()["spooled"] == 2
        time.sleep(1.5)
        assert down.items == []
    # The receiver restarts (a new process would do the same): the previous spool is adopted.
    up = Published()
    with receiver(redis_client, tmp_path, up):
        wait_for(lambda: len(up.items) == 2)
        assert up.task_ids() == [f"reply:{chat}:11", f"reply:{chat}:12"]
        wait_for(lambda: len(list(tmp_path.glob("spool-*.sqlite3"))) == 1)  # the old file removed
    enqueued = redis_client.get(f"rdb24:reply:enqueued:reply:{chat}:11")
    assert enqueued is not None and len(enqueued) == 64  # the reply's fingerprint


def test_the_same_event_twice_is_forwarded_once(
    tmp_path: Path, redis_client: redis.Redis, unique: str
) -> None:
    chat = int(unique[:6], 16)
    published = Published()
    with receiver(redis_client, tmp_path, published) as url:
        for _ in range(2):
            assert requests.post(url + EVENTS_PATH, data=event(chat, 7), timeout=10).status_code == 200
        wait_for(lambda: published.items)
        time.sleep(1.5)  # a second publish would have happened by now
        assert published.task_ids() == [f"reply:{chat}:7"]


def test_slow_publishing_never_holds_up_answers_or_health(
    tmp_path: Path, redis_client: redis.Redis, unique: str
) -> None:
    """Issue 14: three events took 3 s one after the other and /health waited for them."""
    chat = int(unique[:6], 16)
    published = Published(delay=1.0)
    with receiver(redis_client, tmp_path, published) as url:
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            posts = [
                pool.submit(requests.post, url + EVENTS_PATH, data=event(chat, n), timeout=10)
                for n in (1, 2, 3)
            ]
            health = pool.submit(requests.get, url + "/health", timeout=10)
            assert all(p.result().status_code == 200 for p in posts)
            assert health.result().status_code == 200
        assert time.monotonic() - started < 1.0
        wait_for(lambda: len(published.items) == 3, timeout=20)
        assert sorted(published.task_ids()) == [f"reply:{chat}:{n}" for n in (1, 2, 3)]


def test_an_unreadable_spooled_row_becomes_a_dead_letter_and_blocks_nothing(
    tmp_path: Path, redis_client: redis.Redis, unique: str
) -> None:
    chat = int(unique[:6], 16)
    left = Spool(tmp_path / "spool-old-1.sqlite3")  # a previous version's file, its process gone
    good = OperatorReplyPayload(
        connector="rosdomofon", line="1", chat_id="abonent-1", im_chat_id=chat, im_message_id=2, text="ок"
    )
    left.store(
        [(f"reply:{chat}:1", '{"chat": "no such shape"}'), (f"reply:{chat}:2", good.model_dump_json())]
    )
    left.close()
    published = Published()
    with receiver(redis_client, tmp_path, published):
        wait_for(lambda: published.items)
        assert published.task_ids() == [f"reply:{chat}:2"]
    letters = DeadLetterStore(redis_client).list(limit=100)
    (letter,) = [d for d in letters if d.source.get("task_id") == f"reply:{chat}:1"]
    assert letter.name == "flows.deliver_operator_reply" and letter.reason == "invalid_payload"
    assert letter.payload == {"chat": "no such shape"}


def test_an_event_that_cannot_be_stored_is_answered_503_not_200(
    tmp_path: Path, redis_client: redis.Redis, unique: str
) -> None:
    """The only non-200 for a valid event: the spool refused the write (here its table is gone)."""
    chat = int(unique[:6], 16)
    published = Published()
    with receiver(redis_client, tmp_path, published) as url:
        (path,) = tmp_path.glob("spool-*.sqlite3")
        with sqlite3.connect(path) as other:
            other.execute("DROP TABLE replies")
        answer = requests.post(url + EVENTS_PATH, data=event(chat, 5), timeout=10)
        assert answer.status_code == 503, answer.text
        time.sleep(1.5)
        assert published.items == []
