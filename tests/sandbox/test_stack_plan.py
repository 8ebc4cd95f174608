"""How ``rdb24 up`` decides between the operator's services and stand-ins, and what it hands our roles."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from sandbox.stack.plan import Source, StackInputs, make_plan, resolve_sources
from sandbox.stack.redis_db import CLAIM_KEY, _stale, claim_database, release_database
from sandbox.stack.state import StackState, read_state, remove_state, write_state

NOTHING = StackInputs(
    redis_url="redis://127.0.0.1:6379/0",
    redis_explicit=False,
    redis_answers=False,
    kafka_bootstrap="",
    rosdomofon_configured=False,
    bitrix24_configured=False,
    company="",
    flower_user="admin",
    flower_password_set=False,
    free_ports=True,
)
EVERYTHING = replace(
    NOTHING,
    redis_explicit=True,
    redis_answers=True,
    kafka_bootstrap="kafka.rosdomofon.com:443",
    rosdomofon_configured=True,
    bitrix24_configured=True,
    company="acme",
    flower_password_set=True,
)


def test_nothing_configured_means_a_stand_in_for_everything() -> None:
    assert set(resolve_sources(NOTHING).values()) == {Source.EMBEDDED}


def test_configured_services_are_used_as_they_are() -> None:
    plan = make_plan(EVERYTHING)
    assert set(plan.sources.values()) == {Source.CONFIGURED}
    assert {"KAFKA_BOOTSTRAP_SERVERS", "FLOWER_PASSWORD", "WEBHOOK_PUBLIC_URL"}.isdisjoint(plan.env)
    assert [p.name for p in plan.processes] == [
        "worker_flows",
        "worker_api",
        "beat",
        "ingest",
        "webhook",
        "flower",
    ]


def test_an_answering_local_redis_is_used_unless_everything_is_forced() -> None:
    assert resolve_sources(replace(NOTHING, redis_answers=True))["redis"] == Source.LOCAL
    forced = resolve_sources(replace(EVERYTHING, force_embedded=True))
    assert set(forced.values()) == {Source.EMBEDDED}


def test_embedded_stand_ins_are_wired_to_each_other() -> None:
    plan = make_plan(replace(NOTHING, company="acme"))
    tansu = f"127.0.0.1:{plan.ports['tansu']}"
    assert plan.env["KAFKA_BOOTSTRAP_SERVERS"] == tansu
    assert plan.env["KAFKA_USERNAME"] == "" and plan.env["KAFKA_PASSWORD"] == ""  # no SASL on a local broker
    assert plan.env["WEBHOOK_PUBLIC_URL"] == f"http://127.0.0.1:{plan.ports['webhook']}"
    assert plan.env["FLOWER_PASSWORD"]  # generated, so Flower's API is usable and protected
    rosdomofon = next(p for p in plan.processes if p.name == "rosdomofon")
    assert rosdomofon.argv[rosdomofon.argv.index("--kafka") + 1] == tansu
    assert rosdomofon.argv[rosdomofon.argv.index("--company") + 1] == "acme"
    assert not rosdomofon.gated and all(
        p.gated for p in plan.processes if p.name not in {"rosdomofon", "bitrix24"}
    )
    assert len(set(plan.ports.values())) == len(plan.ports)


def test_claimed_database_is_never_taken_by_a_test_session(redis_server_url: str) -> None:
    url = claim_database(redis_server_url)
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        assert not url.endswith("/0")
        assert client.set(CLAIM_KEY, "a-test-session", nx=True) is None  # the fixtures' claim fails here
        assert client.ttl(CLAIM_KEY) == -1  # held for as long as the stack runs
    finally:
        release_database(url)
    assert client.get(CLAIM_KEY) is None


@pytest.mark.process
def test_claims_speak_the_test_fixtures_format(redis_server_url: str) -> None:
    """``<pid>-<tag>``: the fixtures respect a live stack's claim and take over a dead one's, and so do we."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    url = claim_database(redis_server_url, pid=int(dead.stdout))
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        owner = client.get(CLAIM_KEY)
        assert owner == f"{int(dead.stdout)}-stack"
        assert _stale(owner) and not _stale(f"{os.getpid()}-stack") and not _stale("not-a-pid")
        # read by a client without decode_responses the claim is bytes, and means the same
        assert _stale(str(owner).encode()) and not _stale(f"{os.getpid()}-stack".encode())
    finally:
        release_database(url, pid=int(dead.stdout))
    assert client.get(CLAIM_KEY) is None


@pytest.mark.process
def test_state_file_is_private_and_ignored_once_its_stack_is_gone(tmp_path: Path) -> None:
    state = StackState(pid=os.getpid(), run_dir=str(tmp_path), env={"ROSDOMOFON_PASSWORD": "p w'd"})
    path = write_state(state)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_state(tmp_path) == state
    assert "ROSDOMOFON_PASSWORD='p w'\\''d'" in (tmp_path / "stack.env").read_text()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    write_state(state.model_copy(update={"pid": child.pid}))
    deadline = time.monotonic() + 5
    while read_state(tmp_path) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_state(tmp_path) is None
    remove_state(tmp_path)
    assert not path.exists()
