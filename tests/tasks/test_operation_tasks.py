"""Operation tasks in a real worker against the RosDomofon and Bitrix24 simulators over HTTP.

Faults injected in the simulators must end in success with the expected number of task retries
(read from the retry metric and the simulators' call logs); a 400 goes straight to the dead-letter
store and replays once the fault is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from clients.rosdomofon import RosDomofonAPI
from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon import RosDomofonSimulator
from tasks import replay
from tasks.enqueue import enqueue
from tasks.errors import DeadLetterNotFound
from tasks.runtime import metrics
from tasks.state import dead_letters
from tests.conftest import _claim_free_db
from tests.support.celery_worker import CeleryWorker, point_app_at
from tests.support.paths import REPO_ROOT as ROOT
from tests.tasks.test_base_task import wait_dead_letter

pytestmark = pytest.mark.usefixtures("on_session_db")

TIMEOUT = 30
V1 = "/abonents-service/api/v1"
RDB24 = str(Path(sys.executable).parent / "rdb24")


@pytest.fixture
def sims_worker(celery_worker: CeleryWorker) -> CeleryWorker:
    return celery_worker


@pytest.fixture
def rd(rosdomofon_sim: RosDomofonSimulator) -> Iterator[RosDomofonSimulator]:
    rosdomofon_sim.faults.clear()
    rosdomofon_sim.calls.reset()
    yield rosdomofon_sim
    rosdomofon_sim.faults.clear()


@pytest.fixture
def b24(bitrix24_no_faults: Bitrix24Simulator) -> Bitrix24Simulator:
    return bitrix24_no_faults


def run(app: Celery, name: str, **payload: object) -> object:
    return AsyncResult(enqueue(name, payload), app=app).get(timeout=TIMEOUT)


def calls(sim: RosDomofonSimulator, method: str, path: str, status: int | None = None) -> int:
    """Calls the simulator logged for this exact method and path (faulted ones included)."""
    return sum(
        1
        for c in sim.calls.calls()
        if c.method == method and c.path.rstrip("/") == path and (status is None or c.status == status)
    )


def retries(task: str, cause: str) -> float:
    return metrics.RETRIES.value(task=task, cause=cause)


def test_rosdomofon_read_returns_the_simulators_record(
    sims_worker: CeleryWorker, celery_app: Celery, rd: RosDomofonSimulator, rosdomofon_api: RosDomofonAPI
) -> None:
    account = rosdomofon_api.get_accounts()[0]
    result = run(celery_app, "rosdomofon.get_account_info", account_id=account.id)
    assert result["account"]["id"] == account.id


def test_rosdomofon_429_waits_retry_after_then_succeeds(
    sims_worker: CeleryWorker, celery_app: Celery, rd: RosDomofonSimulator, rosdomofon_api: RosDomofonAPI
) -> None:
    account = rosdomofon_api.get_accounts()[1]
    rd.faults.update(rate_limit_next=2, retry_after="1", path_prefix=f"{V1}/accounts/{account.number}/block")
    before = retries("rosdomofon.block_account", "rate_limited")
    started = time.monotonic()
    assert run(celery_app, "rosdomofon.block_account", account_number=account.number) == {"ok": True}
    assert time.monotonic() - started >= 2.0
    assert retries("rosdomofon.block_account", "rate_limited") - before == 2
    block = f"{V1}/accounts/{account.number}/block"
    assert calls(rd, "PUT", block, 429) == 2
    assert calls(rd, "PUT", block, 200) == 1
    run(celery_app, "rosdomofon.unblock_account", account_number=account.number)


def test_rosdomofon_5xx_backs_off_then_succeeds(
    sims_worker: CeleryWorker, celery_app: Celery, rd: RosDomofonSimulator, rosdomofon_api: RosDomofonAPI
) -> None:
    account = rosdomofon_api.get_accounts()[2]
    # More failures than the client's own GET retries (2), so the task must retry.
    rd.faults.update(fail_next=4, fail_status=503, path_prefix=f"{V1}/accounts/{account.id}")
    before = retries("rosdomofon.get_account_info", "transient")
    result = run(celery_app, "rosdomofon.get_account_info", account_id=account.id)
    assert result["account"]["id"] == account.id
    assert retries("rosdomofon.get_account_info", "transient") - before == 1
    assert calls(rd, "GET", f"{V1}/accounts/{account.id}", 503) == 4
    assert calls(rd, "GET", f"{V1}/accounts/{account.id}", 200) == 1


def test_rosdomofon_rejected_token_reauthenticates_once(
    sims_worker: CeleryWorker, celery_app: Celery, rd: RosDomofonSimulator, rosdomofon_api: RosDomofonAPI
) -> None:
    account = rosdomofon_api.get_accounts()[3]
    rd.expire_tokens()  # the client renews on its own: no task retry
    # Two 401s in a row beat the client's own single renewal: the task drops it and runs again.
    rd.faults.update(unauthorized_next=2)
    before = retries("rosdomofon.get_account_connections", "reauthenticate")
    result = run(celery_app, "rosdomofon.get_account_connections", account_id=account.id)
    assert isinstance(result["connections"], list)
    assert retries("rosdomofon.get_account_connections", "reauthenticate") - before == 1


def test_rosdomofon_400_is_dead_lettered_then_replayed_from_the_cli(
    sims_worker: CeleryWorker, celery_app: Celery, rd: RosDomofonSimulator, rosdomofon_api: RosDomofonAPI
) -> None:
    account = rosdomofon_api.get_accounts()[4]
    rd.faults.update(fail_next=1, fail_status=400, path_prefix=f"{V1}/accounts/{account.number}/block")
    task_id = enqueue("rosdomofon.block_account", {"account_number": account.number})
    letter = wait_dead_letter(task_id)
    assert letter.reason == "not_retryable" and letter.attempts == 1
    assert calls(rd, "PUT", f"{V1}/accounts/{account.number}/block") == 1  # not retried
    env = {**os.environ, "REDIS_URL": celery_app.conf.broker_url}
    out = subprocess.run(
        [RDB24, "dlq", "replay", letter.id],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    new_id = out.strip().split(" -> ")[1]
    assert AsyncResult(new_id, app=celery_app).get(timeout=TIMEOUT) == {"ok": True}
    assert calls(rd, "PUT", f"{V1}/accounts/{account.number}/block", 200) == 1
    with pytest.raises(DeadLetterNotFound):
        dead_letters.store().get(letter.id)
    run(celery_app, "rosdomofon.unblock_account", account_number=account.number)


def _contact(app: Celery, unique: str) -> int:
    phone = "7913" + str(abs(hash(unique)) % 10_000_000).zfill(7)
    fields = {"NAME": f"Test {unique}", "PHONE": [{"VALUE": phone, "VALUE_TYPE": "MOBILE"}]}
    return int(run(app, "bitrix24.create_contact", fields=fields)["contact_id"])  # type: ignore[index]


def test_bitrix24_503_rate_limit_storm_ends_in_success(
    sims_worker: CeleryWorker, celery_app: Celery, b24: Bitrix24Simulator, unique: str
) -> None:
    contact_id = _contact(celery_app, unique)
    b24.inject(
        "error", status=503, code="QUERY_LIMIT_EXCEEDED", description="Too many requests",
        method="crm.contact.get", count=3,
    )  # fmt: skip
    before = retries("bitrix24.get_contact", "rate_limited")
    calls_before = b24.portal.call_counts().get("crm.contact.get", 0)
    result = run(celery_app, "bitrix24.get_contact", contact_id=contact_id)
    assert result["contact"]["ID"] == contact_id
    assert retries("bitrix24.get_contact", "rate_limited") - before == 3
    assert b24.portal.call_counts().get("crm.contact.get", 0) - calls_before == 4


def test_bitrix24_5xx_on_a_read_backs_off_then_succeeds(
    sims_worker: CeleryWorker, celery_app: Celery, b24: Bitrix24Simulator, unique: str
) -> None:
    contact_id = _contact(celery_app, unique)
    b24.inject("error", status=500, code="INTERNAL_SERVER_ERROR", method="crm.contact.get", count=2)
    before = retries("bitrix24.get_contact", "transient")
    assert run(celery_app, "bitrix24.get_contact", contact_id=contact_id)["contact"]["ID"] == contact_id
    assert retries("bitrix24.get_contact", "transient") - before == 2


def test_bitrix24_400_is_dead_lettered_and_replays_once_fixed(
    sims_worker: CeleryWorker, celery_app: Celery, b24: Bitrix24Simulator, unique: str
) -> None:
    contact_id = _contact(celery_app, unique)
    b24.inject(
        "error",
        status=400,
        code="ERROR_ARGUMENT",
        description="bad field",
        method="crm.contact.update",
        count=1,
    )
    task_id = enqueue("bitrix24.update_contact", {"contact_id": contact_id, "fields": {"LAST_NAME": unique}})
    letter = wait_dead_letter(task_id)
    assert letter.reason == "not_retryable" and "ERROR_ARGUMENT" in letter.error
    new_id = replay.replay(dead_letters.store(), letter.id)
    assert AsyncResult(new_id, app=celery_app).get(timeout=TIMEOUT) == {"ok": True}
    assert b24.portal.contacts[contact_id]["LAST_NAME"] == unique


def test_no_credential_reaches_the_worker_log(
    sims_worker: CeleryWorker,
    celery_app: Celery,
    rd: RosDomofonSimulator,
    b24: Bitrix24Simulator,
    unique: str,
) -> None:
    # Exercise both services (incl. a token renewal and a failing call) before scanning the whole log.
    rd.expire_tokens()
    run(celery_app, "rosdomofon.get_accounts")
    _contact(celery_app, unique)
    b24.inject("error", status=500, code="INTERNAL_SERVER_ERROR", method="batch", count=1)
    before = retries("bitrix24.find_contacts_by_phone", "transient")
    run(celery_app, "bitrix24.find_contacts_by_phone", phones=["79130000000"])
    assert retries("bitrix24.find_contacts_by_phone", "transient") - before == 1
    log = sims_worker.logs()
    assert "rosdomofon.get_accounts" in log and "bitrix24.create_contact" in log
    secrets = [rd.password, b24.portal.webhook_secret, *list(rd.tokens._expires)]
    leaked = [s for s in secrets if s and s in log]
    assert leaked == []


@pytest.fixture
def oauth_worker(
    celery_worker_factory: Callable[..., CeleryWorker],
    bitrix24_sim: Bitrix24Simulator,
    redis_server_url: str,
    redis_url: str,
) -> Iterator[tuple[CeleryWorker, Celery]]:
    """A worker with the Bitrix24 OAuth app on a DB of its own (the shared worker uses the webhook)."""
    url = _claim_free_db(redis_server_url)
    oauth = bitrix24_sim.oauth
    access, refresh = bitrix24_sim.issue_tokens()
    env = {
        "REDIS_URL": url,
        "BITRIX24_CLIENT_ENDPOINT": oauth.client_endpoint,
        "BITRIX24_CLIENT_ID": oauth.client_id,
        "BITRIX24_CLIENT_SECRET": oauth.client_secret,
        "BITRIX24_SERVER_ENDPOINT": oauth.server_endpoint,
        "BITRIX24_ACCESS_TOKEN": access,
        "BITRIX24_REFRESH_TOKEN": refresh,
        "BITRIX24_TIMEOUT": "5",
    }
    worker = celery_worker_factory(env, queues=["bitrix24"])
    app = point_app_at(url)
    try:
        yield worker, app
    finally:
        worker.stop()
        point_app_at(redis_url)
        redis.Redis.from_url(url).flushdb()


def test_bitrix24_expired_oauth_token_is_refreshed_without_a_task_retry(
    oauth_worker: tuple[CeleryWorker, Celery], b24: Bitrix24Simulator, unique: str
) -> None:
    worker, app = oauth_worker
    contact_id = _contact(app, unique)
    refreshes = b24.portal.summary()["oauth_refreshes"]
    before = retries("bitrix24.get_contact", "transient") + retries("bitrix24.get_contact", "reauthenticate")
    b24.expire_access_tokens()
    assert run(app, "bitrix24.get_contact", contact_id=contact_id)["contact"]["ID"] == contact_id
    assert b24.portal.summary()["oauth_refreshes"] == refreshes + 1
    after = retries("bitrix24.get_contact", "transient") + retries("bitrix24.get_contact", "reauthenticate")
    assert after == before
    assert worker.running


def test_bitrix24_timed_503_storm_is_waited_out(
    sims_worker: CeleryWorker, celery_app: Celery, b24: Bitrix24Simulator, unique: str
) -> None:
    contact_id = _contact(celery_app, unique)
    before = retries("bitrix24.get_contact", "rate_limited")
    b24.inject("storm", seconds=1.0)  # every call answers 503 QUERY_LIMIT_EXCEEDED for a second
    started = time.monotonic()
    assert run(celery_app, "bitrix24.get_contact", contact_id=contact_id)["contact"]["ID"] == contact_id
    assert time.monotonic() - started >= 0.9
    assert retries("bitrix24.get_contact", "rate_limited") - before >= 1
    assert b24.portal.summary()["rate_limited"] >= 1
