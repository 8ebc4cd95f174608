"""The enqueue contract: every catalogued task is registered in a real worker, bad payloads are
refused with field-level errors (CLI and helper), bad settings are named, Flower has auth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from celery import Celery
from celery.result import AsyncResult

from sandbox.stack.embedded import free_port, wait_for_port
from tasks.enqueue import enqueue
from tasks.errors import InvalidPayloadError, UnknownTaskError
from tests.support import probe_tasks  # noqa: F401  (registers probe.* for the enqueue helper)
from tests.support.celery_worker import CeleryWorker
from tests.support.paths import REPO_ROOT as ROOT

pytestmark = pytest.mark.usefixtures("on_session_db")

BIN = Path(sys.executable).parent


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_every_catalogued_task_is_registered_in_the_worker(
    celery_worker: CeleryWorker, redis_url: str
) -> None:
    listed = cli("rdb24", "tasks", "--json")
    assert listed.returncode == 0, listed.stderr
    catalogue = {item["name"]: item for item in json.loads(listed.stdout)}
    assert {"rosdomofon.block_account", "bitrix24.get_contact", "rosdomofon.update_signup"} <= set(catalogue)
    assert all(item["payload_schema"]["type"] == "object" for item in catalogue.values())
    inspected = cli(
        "celery", "-A", "tasks", "inspect", "registered", "-d", celery_worker.hostname, "-j", "-t", "10",
        env={"REDIS_URL": redis_url},
    )  # fmt: skip
    assert inspected.returncode == 0, inspected.stderr + inspected.stdout
    registered = set(json.loads(inspected.stdout)[celery_worker.hostname])
    assert set(catalogue) - registered == set()


@pytest.mark.process
def test_cli_refuses_a_bad_payload_naming_the_field(redis_url: str) -> None:
    extra = cli(
        "rdb24", "enqueue", "rosdomofon.block_account", '{"account_numbr": "1"}', env={"REDIS_URL": redis_url}
    )
    assert extra.returncode != 0
    assert "account_number: Field required" in extra.stderr and "account_numbr" in extra.stderr
    phone = cli(
        "rdb24", "enqueue", "rosdomofon.get_account_by_phone", '{"phone": "12"}', env={"REDIS_URL": redis_url}
    )
    assert phone.returncode != 0 and "phone:" in phone.stderr
    unknown = cli("rdb24", "enqueue", "rosdomofon.nope", "{}", env={"REDIS_URL": redis_url})
    assert unknown.returncode != 0 and "unknown task 'rosdomofon.nope'" in unknown.stderr
    broken = cli("rdb24", "enqueue", "rosdomofon.get_accounts", "{nope", env={"REDIS_URL": redis_url})
    assert broken.returncode != 0 and "not valid JSON" in broken.stderr


def test_cli_enqueues_and_prints_the_task_id(
    celery_worker: CeleryWorker, celery_app: Celery, redis_url: str, rosdomofon_sim: object
) -> None:
    done = cli("rdb24", "enqueue", "rosdomofon.get_accounts", "{}", env={"REDIS_URL": redis_url})
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    result = AsyncResult(task_id, app=celery_app).get(timeout=30)
    # Other tests create accounts in the session simulator: compare with its world as it is now.
    expected = {account.id for account in rosdomofon_sim.world.accounts.values()}  # type: ignore[attr-defined]
    assert {account["id"] for account in result["accounts"]} == expected


def test_helper_validates_against_the_same_schema(celery_worker: CeleryWorker, celery_app: Celery) -> None:
    with pytest.raises(InvalidPayloadError, match=r"invalid payload for rosdomofon.connect_service: flat_id"):
        enqueue("rosdomofon.connect_service", {"service_id": 1, "flat_id": -5})
    with pytest.raises(UnknownTaskError):
        enqueue("nope.nothing", {})
    task_id = enqueue("probe.add", {"x": 40, "y": 2}, task_id="fixed-id-for-contract-test")
    assert task_id == "fixed-id-for-contract-test"
    assert AsyncResult(task_id, app=celery_app).get(timeout=30) == {"x": 42}


@pytest.mark.process
@pytest.mark.parametrize(
    ("variable", "value"),
    [("ROSDOMOFON_TIMEOUT", "soon"), ("VISIBILITY_TIMEOUT", "10"), ("REDIS_URL", "http://x")],
)
def test_worker_start_names_a_malformed_variable(redis_url: str, variable: str, value: str) -> None:
    bad = cli("celery", "-A", "tasks", "worker", "-P", "solo", env={"REDIS_URL": redis_url, variable: value})
    assert bad.returncode != 0
    assert f"invalid configuration: {variable}" in bad.stderr or f"{variable} (" in bad.stderr


def test_flower_requires_basic_auth_from_settings(
    celery_worker: CeleryWorker, celery_app: Celery, redis_url: str
) -> None:
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "FLOWER_PORT": str(port), "FLOWER_USER": "ops"}
    env["FLOWER_PASSWORD"] = "flower-pass-" + celery_worker.hostname[:8]
    process = subprocess.Popen(
        [str(BIN / "celery"), "-A", "tasks", "flower", "--address=127.0.0.1"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        url = f"http://127.0.0.1:{port}/api/task/types"
        assert requests.get(url, timeout=10).status_code == 401
        auth = ("ops", env["FLOWER_PASSWORD"])
        assert requests.get(url, auth=auth, timeout=10).status_code == 200
        # Arguments are shown masked: a credential-looking field sent by name never reaches Flower.
        secret = "hunter2-" + celery_worker.hostname[8:16]
        seen: dict = {}
        deadline = time.monotonic() + 30
        while not seen.get("kwargs") and time.monotonic() < deadline:
            # Flower may still be attaching to the event stream: send until it sees one whole task.
            task_id = celery_app.send_task("probe.add", kwargs={"x": 1, "api_token": secret}).id
            AsyncResult(task_id, app=celery_app).get(timeout=10)
            time.sleep(0.3)
            shown = requests.get(f"http://127.0.0.1:{port}/api/tasks", auth=auth, timeout=10).json()
            seen = shown.get(task_id) or {}
        assert "api_token" in seen["kwargs"] and "***" in seen["kwargs"]
        assert secret not in json.dumps(shown)
    finally:
        process.terminate()
        process.wait(15)
