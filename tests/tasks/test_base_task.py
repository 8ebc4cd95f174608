"""The base task in a real worker: retries by cause, dead letters, replay, chains, logging context."""

from __future__ import annotations

import json
import time

import pytest
import redis
from celery import Celery, chain
from celery.result import AsyncResult

from tasks import replay
from tasks.errors import DeadLetterNotFound
from tasks.runtime import metrics
from tasks.state import dead_letters
from tests.support.celery_worker import CeleryWorker
from tests.support.probe_tasks import attempts_key

pytestmark = pytest.mark.usefixtures("on_session_db")

TIMEOUT = 30


@pytest.fixture
def worker(celery_worker: CeleryWorker) -> CeleryWorker:
    return celery_worker


def send(app: Celery, name: str, **payload: object) -> AsyncResult:
    return app.send_task(name, kwargs=payload)


def attempts(client: redis.Redis, key: str) -> list[dict]:
    return [json.loads(raw) for raw in client.lrange(attempts_key(key), 0, -1)]


def wait_dead_letter(task_id: str, timeout: float = TIMEOUT) -> dead_letters.DeadLetter:
    store = dead_letters.store()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for letter in store.list(limit=200):
            if letter.source.get("task_id") == task_id:
                return letter
        time.sleep(0.05)
    raise TimeoutError(f"no dead letter for {task_id}")


def test_transient_errors_back_off_then_succeed(
    worker: CeleryWorker, celery_app: Celery, redis_client: redis.Redis, unique: str
) -> None:
    before = metrics.RETRIES.value(task="probe.flaky", cause="transient")
    result = send(celery_app, "probe.flaky", key=unique, failures=["transient", "transient", "look_up_first"])
    assert result.get(timeout=TIMEOUT) == {"key": unique, "calls": 4}
    seen = attempts(redis_client, unique)
    assert [a["number"] for a in seen] == [1, 2, 3, 4]
    assert [a["is_retry"] for a in seen] == [False, True, True, True]
    assert metrics.RETRIES.value(task="probe.flaky", cause="transient") - before == 2


def test_rate_limit_honours_retry_after_and_has_its_own_budget(
    worker: CeleryWorker, celery_app: Celery, unique: str
) -> None:
    # Six 429s exceed MAX_RETRIES (4) but not MAX_RATE_LIMIT_RETRIES (10): rate limits are not failures.
    started = time.monotonic()
    result = send(celery_app, "probe.flaky", key=unique, failures=["rate_limited"] * 2, retry_after=1.0)
    assert result.get(timeout=TIMEOUT)["calls"] == 3
    assert time.monotonic() - started >= 2.0  # waited the server's Retry-After twice
    many = send(celery_app, "probe.flaky", key=unique + "b", failures=["rate_limited"] * 6, retry_after=0.05)
    assert many.get(timeout=TIMEOUT)["calls"] == 7


def test_reauthentication_is_tried_once_in_place(
    worker: CeleryWorker, celery_app: Celery, unique: str
) -> None:
    result = send(celery_app, "probe.flaky", key=unique, failures=["reauth"])
    assert result.get(timeout=TIMEOUT)["calls"] == 2
    twice = send(celery_app, "probe.flaky", key=unique + "b", failures=["reauth", "reauth"])
    letter = wait_dead_letter(twice.id)
    assert letter.reason == "not_retryable" and "ReauthenticateError" in letter.error


def test_exhausted_retries_land_in_dead_letters(
    worker: CeleryWorker, celery_app: Celery, unique: str
) -> None:
    result = send(celery_app, "probe.flaky", key=unique, failures=["transient"] * 10)
    letter = wait_dead_letter(result.id)
    assert letter.reason == "retries_exhausted"
    assert letter.attempts == 5  # first run + MAX_RETRIES (4)
    assert letter.source["retries_by_cause"] == {"transient": 4}
    assert letter.source["queue"] == "flows" and letter.source["root_id"] == result.id
    assert "RetryLaterError" in letter.error and "Traceback" in (letter.traceback or "")
    with pytest.raises(Exception, match="scripted transient"):
        result.get(timeout=TIMEOUT)


def test_an_operation_with_its_own_budget_gives_up_sooner(
    worker: CeleryWorker, celery_app: Celery, unique: str
) -> None:
    result = send(celery_app, "probe.impatient", key=unique, failures=["transient"] * 10)
    letter = wait_dead_letter(result.id)
    assert letter.reason == "retries_exhausted"
    assert letter.attempts == 2  # first run + its own max_retries (1), not MAX_RETRIES (4)
    assert letter.source["retries_by_cause"] == {"transient": 1}


def test_invalid_input_is_not_retried_and_replays_after_the_fix(
    worker: CeleryWorker, celery_app: Celery, redis_client: redis.Redis, unique: str
) -> None:
    result = send(celery_app, "probe.flaky", key=unique, failures=["fix_input"], secret_note="hunter2")
    letter = wait_dead_letter(result.id)
    assert letter.reason == "not_retryable" and letter.attempts == 1
    assert letter.payload["key"] == unique and letter.payload["failures"] == ["fix_input"]
    assert len(attempts(redis_client, unique)) == 1  # no retry
    # The scripted fault is "removed" (the next call succeeds); the replay runs the original payload.
    new_id = replay.replay(dead_letters.store(), letter.id)
    assert new_id != result.id
    assert AsyncResult(new_id, app=celery_app).get(timeout=TIMEOUT) == {"key": unique, "calls": 2}
    last = attempts(redis_client, unique)[-1]
    assert last == {"number": 1, "is_retry": False, "replay_of": letter.id}
    with pytest.raises(DeadLetterNotFound):
        replay.replay(dead_letters.store(), letter.id)  # replayed once only


def test_bad_payload_fails_at_once_naming_the_field(worker: CeleryWorker, celery_app: Celery) -> None:
    result = celery_app.send_task("probe.add", kwargs={"x": "not a number"})
    letter = wait_dead_letter(result.id)
    assert letter.reason == "invalid_payload" and letter.attempts == 1
    assert "x: Input should be a valid integer" in letter.error


def test_chain_passes_each_result_as_the_next_payload(worker: CeleryWorker, celery_app: Celery) -> None:
    add = celery_app.signature("probe.add")
    workflow = chain(
        add.clone(kwargs={"x": 1, "y": 2}), add.clone(kwargs={"y": 10}), add.clone(kwargs={"y": 100})
    )
    assert workflow.apply_async().get(timeout=TIMEOUT) == {"x": 113}


def test_logs_carry_task_and_root_ids_and_no_secret(
    worker: CeleryWorker, celery_app: Celery, unique: str
) -> None:
    result = send(
        celery_app, "probe.flaky", key=unique, failures=["transient"], secret_note="hunter2-" + unique
    )
    result.get(timeout=TIMEOUT)
    worker.wait_for_log(f"task_id={result.id}")
    lines = [line for line in worker.logs().splitlines() if result.id in line]
    assert any(f"root_id={result.id}" in line and "task_name=probe.flaky" in line for line in lines)
    assert "hunter2-" + unique not in worker.logs()


def test_positional_arguments_other_than_one_object_are_dead_lettered(
    worker: CeleryWorker, celery_app: Celery
) -> None:
    result = celery_app.send_task("probe.add", args=[1, 2])
    letter = wait_dead_letter(result.id)
    assert letter.reason == "invalid_payload" and "at most one positional JSON object" in letter.error
    assert letter.payload == {"args": [1, 2]}
