"""``rdb24 status`` sections read what the other roles write to Redis, and degrade one by one."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from sandbox.embedded import free_port
from sandbox.redis_db import claim_database, release_database
from schemas.dead_letters import DeadLetter
from tasks.cli import status_report
from tasks.cli.stack_settings import settings_with_overrides
from tasks.ingest.metrics import IngestStatus, write_status
from tasks.reconcile.report import LAST_REPORT_KEY
from tasks.runtime import metrics
from tasks.state import inflight
from tasks.state.dead_letters import DeadLetterStore


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
