"""``rdb24 status`` sections read what the other roles write to Redis, and degrade one by one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from sandbox.stack.embedded import free_port
from sandbox.stack.redis_db import claim_database, release_database
from schemas.dead_letters import DeadLetter
from tasks.cli import status_report
from tasks.cli.stack_settings import settings_with_overrides
from tasks.ingest.metrics import IngestStatus, write_status
from tasks.reconcile.report import LAST_REPORT_KEY
from tasks.runtime import metrics
from tasks.state import inflight
from tasks.state.dead_letters import DeadLetterStore
from tests.support.celery_worker import CeleryWorker

RDB24 = str(Path(sys.executable).with_name("rdb24"))


@pytest.fixture
def private_url(redis_server_url: str) -> Iterator[str]:
    """A database of our own: these tests write queue lists and the RedBeat lock, which would confuse
    (and be confused by) session-wide workers on the shared test database."""
    url = claim_database(redis_server_url)
    client = redis.Redis.from_url(url)
    leftovers = [k for k in client.scan_iter() if k != b"rdb24:test-session-claim"]
    if leftovers:  # an unclaimed database holds nobody's data
        client.delete(*leftovers)
    yield url
    redis.Redis.from_url(url).flushdb()
    release_database(url)


@pytest.fixture
def client(private_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(private_url, decode_responses=True)
    metrics.use_redis(client)
    yield client
    metrics.use_redis(None)


def by_title(sections: list[status_report.Section]) -> dict[str, status_report.Section]:
    return {s.title: s for s in sections}


def test_every_section_reads_what_the_roles_wrote(client: redis.Redis, private_url: str) -> None:
    client.rpush("bitrix24", "m1", "m2", "m3")
    DeadLetterStore(client).add(
        DeadLetter(
            name="bitrix24.create_contact",
            payload={"phone": "79130000000"},
            reason="invalid_payload",
            error="FixInputError: PHONE is empty",
        )
    )
    status = IngestStatus(group="g", topic="MESSAGES_IN_demo", consumer="host-1", consumed=7, enqueued=7)
    status.lag = {"MESSAGES_IN_demo:0": 5, "MESSAGES_IN_demo:1": 4}
    write_status(client, status)
    report = {"run_id": "r1", "status": "ok", "started_at": time.time() - 5, "finished_at": time.time(),
              "created": 3, "updated": 1, "bitrix24_requests": 2, "duration_seconds": 4.5}  # fmt: skip
    client.set(LAST_REPORT_KEY, json.dumps(report))
    client.set("rdb24:redbeat::lock", "x", px=60_000)
    client.hset("rdb24:b24:bucket:portal.example", mapping={"level": "60", "ts": str(time.time())})

    settings = settings_with_overrides(
        {"REDIS_URL": private_url, "BITRIX24_BURST": "50", "BITRIX24_RATE": "2"}
    )
    sections = by_title(status_report.collect_status(settings, ping_timeout=0.3))

    assert ("bitrix24", "3", "messages waiting") in sections["Queues"].rows
    assert sections["Dead letters"].rows[0][:2] == ("stored", "1")
    assert "PHONE is empty" in sections["Dead letters"].rows[1][2]
    ingest = sections["Ingest"].rows[0]
    assert ingest[:2] == ("host-1", "lag 9") and "consumed 7" in ingest[2]
    reconcile = dict((row[0], row) for row in sections["Reconciliation"].rows)
    assert reconcile["beat"][1] == "active" and reconcile["last run"][1] == "ok"
    assert "created 3" in reconcile["last run"][2]
    bucket = sections["Bitrix24 rate limiter"].rows[0]
    assert bucket[0] == "portal.example" and "waits" in bucket[2]  # 60 queued in a bucket of 50
    assert not sections["Workers"].healthy  # no worker on this database answers


def test_a_missing_piece_is_reported_not_raised(client: redis.Redis, private_url: str) -> None:
    settings = settings_with_overrides({"REDIS_URL": private_url})
    sections = by_title(status_report.collect_status(settings, ping_timeout=0.3))
    assert sections["Ingest"].rows[0][1] == "not running" and not sections["Ingest"].healthy
    assert sections["Reconciliation"].rows[1][1] == "none yet"
    client.set(LAST_REPORT_KEY, "{not json")
    broken = by_title(status_report.collect_status(settings, ping_timeout=0.3))["Reconciliation"]
    assert broken.error and not broken.healthy
    assert by_title(status_report.collect_status(settings, ping_timeout=0.3))["Queues"].healthy


def test_redis_down_is_one_clear_line() -> None:
    settings = settings_with_overrides({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    sections = status_report.collect_status(settings, ping_timeout=0.3)
    assert len(sections) == 1 and sections[0].title == "Redis" and "unreachable" in (sections[0].error or "")


def test_probes(client: redis.Redis, private_url: str) -> None:
    import socket

    settings = settings_with_overrides({"REDIS_URL": private_url})
    assert status_report.probe("beat", settings)[0] is False
    assert status_report.probe("ingest", settings)[0] is False
    client.set("rdb24:redbeat::lock", "x", px=60_000)
    write_status(client, IngestStatus(group="g", topic="t", consumer=f"{socket.gethostname()}-1"))
    assert status_report.probe("beat", settings)[0] is True
    assert status_report.probe("ingest", settings)[0] is True


def run_status(*args: str, redis_url: str, cwd: Path) -> subprocess.Popen[str]:
    """``rdb24 status`` as a script runs it: its own process, no stack in ``cwd``, this Redis."""
    return subprocess.Popen(
        [RDB24, "status", "--run-dir", str(cwd / "var"), *args],
        cwd=cwd, env={**os.environ, "REDIS_URL": redis_url, "COLUMNS": "160"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_the_verdict_is_the_exit_code_and_the_json_has_stable_keys(
    client: redis.Redis, private_url: str, tmp_path: Path
) -> None:
    down = run_status("--json", redis_url=f"redis://127.0.0.1:{free_port()}/0", cwd=tmp_path)
    out, _ = down.communicate(timeout=60)
    assert down.returncode == 2
    document = json.loads(out)
    assert (document["status"], document["exit_code"], document["version"]) == ("unreachable", 2, 1)
    assert [s["key"] for s in document["sections"]] == ["redis"]

    started = time.monotonic()
    attention = run_status("--json", "--wait", "1.5", "--timeout", "0.2", redis_url=private_url, cwd=tmp_path)
    out, _ = attention.communicate(timeout=60)
    assert attention.returncode == 1 and time.monotonic() - started >= 1.5  # looked again until time was up
    document = json.loads(out)
    assert set(document) == {"version", "status", "exit_code", "checked_at", "where", "sections"}
    assert document["status"] == "attention" and document["where"] == "configured environment"
    keys = [s["key"] for s in document["sections"]]
    assert keys == [
        "workers", "queues", "ingest", "dead_letters", "in_flight_entries_unreadable", "reconciliation",
        "rate_limiter",
    ]  # fmt: skip
    sections = {s["key"]: s for s in document["sections"]}
    assert not sections["workers"]["healthy"] and sections["queues"]["healthy"]
    assert set(sections["queues"]["rows"][0]) == {"item", "value", "details"}

    table = run_status("--timeout", "0.2", redis_url=private_url, cwd=tmp_path)
    out, _ = table.communicate(timeout=60)
    assert table.returncode == 1 and "attention: Workers, Ingest (exit 1)" in out, out


def test_wait_returns_as_soon_as_the_system_becomes_healthy(
    client: redis.Redis,
    private_url: str,
    tmp_path: Path,
    celery_worker_factory: Callable[..., CeleryWorker],
) -> None:
    write_status(client, IngestStatus(group="g", topic="t", consumer="host-1"))
    waiting = run_status("--json", "--wait", "120", "--timeout", "1", redis_url=private_url, cwd=tmp_path)
    time.sleep(2)
    assert waiting.poll() is None, "no worker answers yet: it must still be waiting"
    worker = celery_worker_factory({"REDIS_URL": private_url}, queues=["reconcile"])
    try:
        out, err = waiting.communicate(timeout=60)
    finally:
        worker.stop(timeout=15)
    assert waiting.returncode == 0, out + err
    document = json.loads(out)
    assert document["status"] == "healthy"
    workers = {s["key"]: s for s in document["sections"]}["workers"]
    assert [row["item"] for row in workers["rows"]] == [worker.hostname]


def test_a_full_dead_letter_store_and_unreadable_ledger_entries_ask_for_attention(
    client: redis.Redis, private_url: str
) -> None:
    settings = settings_with_overrides({"REDIS_URL": private_url, "DEAD_LETTER_MAX": "1"})
    calm = by_title(status_report.collect_status(settings, ping_timeout=0.3))
    assert calm["Dead letters"].healthy and calm["In-flight entries unreadable"].healthy
    store = DeadLetterStore(client, max_items=1)
    for n in range(2):  # both carry a message: neither may be trimmed
        store.add(
            DeadLetter(
                name="flows.post_to_chat", reason="unexpected", error="E", source={"message_id": f"m{n}"}
            )
        )
    client.hset(inflight.UNREADABLE_KEY, "T:0:1", json.dumps({"raw": "{nope", "error": "JSONDecodeError"}))
    sections = by_title(status_report.collect_status(settings, ping_timeout=0.3))
    letters = sections["Dead letters"]
    assert not letters.healthy and letters.rows[1][:2] == ("store full", "2/1")
    unreadable = sections["In-flight entries unreadable"]
    assert not unreadable.healthy and unreadable.rows[0][:2] == ("moved aside", "1")
