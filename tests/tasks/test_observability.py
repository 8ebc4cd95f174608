"""Logging (loguru as the one sink, JSON, context, redaction) and the Prometheus exporter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis
import requests
from celery import Celery

from sandbox.stack import embedded
from sandbox.stack.embedded import free_port
from schemas.dead_letters import DeadLetter
from tasks.ingest.metrics import IngestStatus, write_status
from tasks.reconcile.report import LAST_REPORT_KEY
from tasks.runtime import metrics
from tasks.runtime.redaction import redact
from tasks.state.dead_letters import DeadLetterStore
from tests.support.paths import REPO_ROOT as ROOT

pytestmark = pytest.mark.usefixtures("on_session_db")

LOG_SCRIPT = """
import logging
from loguru import logger
from tasks.runtime import log
log.configure(level="INFO", json=True)
context = dict(task_name="rosdomofon.block_account", task_id="t-1", root_id="r-1", message_id="T:0:5")
with logger.contextualize(**context):
    logger.info("calling https://portal.bitrix24.ru/rest/1/abcdef12345/crm.contact.get")
    logging.getLogger("kombu.test").warning("std lib says access_token=zzz-secret")
    logger.bind(payload={"password": "p4ss", "id": 7}).info("bound")
logger.complete()
"""


@pytest.mark.process
def test_json_logs_carry_context_and_route_stdlib_and_mask_secrets() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LOG_SCRIPT], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    records = [json.loads(line)["record"] for line in done.stderr.splitlines() if line.startswith("{")]
    assert len(records) == 3
    for record in records:
        extra = record["extra"]
        assert (extra["task_id"], extra["root_id"], extra["message_id"]) == ("t-1", "r-1", "T:0:5")
        assert extra["task_name"] == "rosdomofon.block_account"
    assert records[1]["message"].startswith("std lib says access_token=")  # stdlib routed to loguru
    assert "abcdef12345" not in done.stderr and "zzz-secret" not in done.stderr and "p4ss" not in done.stderr
    assert records[2]["extra"]["payload"] == {"password": "***", "id": 7}


def test_redaction_masks_nested_credentials_but_keeps_ids() -> None:
    value = {
        "contact_id": 5,
        "auth": {"access_token": "a", "member_id": "m"},
        "rows": [{"client_secret": "s"}],
    }
    assert redact(value) == {"contact_id": 5, "auth": "***", "rows": [{"client_secret": "***"}]}


def test_exporter_serves_counters_from_every_process(celery_app: Celery, unique: str) -> None:
    metrics.RETRIES.inc(task=f"test.{unique}", cause="rate_limited")
    metrics.RETRIES.inc(2, task=f"test.{unique}", cause="rate_limited")
    port = free_port()
    assert metrics.serve(port, addr="127.0.0.1")
    assert not metrics.serve(port, addr="127.0.0.1")  # a second process on the host does not bind
    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert f'rdb24_task_retries_total{{cause="rate_limited",task="test.{unique}"}} 3.0' in body
    assert "rdb24_dead_letters_total" in body


def test_exporter_serves_what_redis_holds_now() -> None:
    """Queue depths, dead letters waiting, ingest lag and bucket fill are read at scrape time.

    On a Valkey of its own: the session database has a worker taking from its queues.
    """
    server = embedded.valkey().start()
    client = redis.Redis(host=server.host, port=server.port, decode_responses=True)
    metrics.use_redis(client)
    try:
        client.rpush("bitrix24", "m1", "m2")
        client.rpush("bitrix24\x06\x163", "m3")  # kombu's list for priority 3 of the same queue
        DeadLetterStore(client).add(
            DeadLetter(name="bitrix24.create_contact", payload={}, reason="invalid_payload", error="x")
        )
        status = IngestStatus(group="g", topic="MESSAGES_IN_x", consumer="host-7")
        status.lag = {"MESSAGES_IN_x:0": 5, "MESSAGES_IN_x:1": 4}
        write_status(client, status)
        client.set(LAST_REPORT_KEY, json.dumps({"status": "failed", "finished_at": 1_700_000_000}))
        seconds, _ = client.time()
        client.hset("rdb24:b24:bucket:portal.example", mapping={"level": "100", "ts": str(seconds)})
        metrics.DEAD_LETTER_STORE_FULL.set(1)
        port = free_port()
        assert metrics.serve(port, addr="127.0.0.1")
        body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        metrics.use_redis(None)
        server.stop()
    samples = dict(line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#"))
    assert samples['rdb24_queue_depth{queue="bitrix24"}'] == "3.0"
    assert samples['rdb24_queue_depth{queue="flows"}'] == "0.0"
    assert samples["rdb24_dead_letters_stored"] == "1.0"
    assert samples['rdb24_ingest_lag_records{consumer="host-7"}'] == "9.0"
    assert samples["rdb24_ingest_processes"] == "1.0"
    assert samples["rdb24_reconcile_last_run_failed"] == "1.0"
    assert samples["rdb24_reconcile_last_run_timestamp_seconds"] == "1.7e+09"
    assert samples["rdb24_dead_letter_store_full"] == "1.0"
    fill = float(samples['rdb24_bitrix24_bucket_fill_ratio{bucket="portal.example"}'])
    assert 1.5 < fill <= 2.0  # 100 booked in a bucket of 50 (default burst), draining at 2/s
