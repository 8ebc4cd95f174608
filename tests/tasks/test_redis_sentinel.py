"""``sentinel://`` Redis URLs (tasks/runtime/redis_target.py) against a real Sentinel.

A master and one sentinel of our own on free ports (``redis-server --sentinel``; Debian's
``redis-sentinel`` is the same binary). A worker started with ``REDIS_URL=sentinel://...`` takes a task
from the broker (kombu's Sentinel transport, via our own), writes our state through
``redis_target``'s client and stores the result in the backend (Celery's SentinelBackend): one round
trip exercises all three. Locally a missing binary skips; under ``CI=true`` it fails.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from sandbox.stack import embedded
from tasks.errors import RedisUrlError
from tasks.runtime import redis_target
from tasks.settings import Settings
from tests.conftest import service_missing
from tests.support.celery_worker import CeleryWorker
from tests.support.probe_tasks import calls_key

pytestmark = pytest.mark.timeout(180)
MASTER = "rdb24-test-master"


def _server_binary() -> str | None:
    for name in ("redis-sentinel", "redis-server"):
        path = shutil.which(name)
        if path:
            return path
    try:
        return embedded.valkey_binary()  # valkey-server has the same --sentinel mode
    except embedded.EmbeddedServiceError:
        return None


@pytest.fixture(scope="module")
def sentinel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A master plus one sentinel watching it; yields the ``sentinel://`` URL of DB 0."""
    binary = _server_binary()
    if binary is None:
        service_missing("no redis-server / redis-sentinel binary (apt-get install redis-sentinel)")
    assert binary is not None
    work = tmp_path_factory.mktemp("sentinel")
    master_port, sentinel_port = embedded.free_port(), embedded.free_port()
    master = embedded.EmbeddedServer(
        name="sentinel-master",
        argv=[binary, "--port", str(master_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        host="127.0.0.1",
        port=master_port,
        log_path=work / "master.log",
    ).start()
    conf = work / "sentinel.conf"  # sentinel rewrites its config file, so it must be its own copy
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\nprotected-mode no\ndir {work}\n"
        f"sentinel monitor {MASTER} 127.0.0.1 {master_port} 1\n"
        f"sentinel down-after-milliseconds {MASTER} 5000\n"
    )
    sentinel = embedded.EmbeddedServer(
        name="sentinel",
        argv=[binary, str(conf), "--sentinel"],
        host="127.0.0.1",
        port=sentinel_port,
        log_path=work / "sentinel.log",
    ).start()
    try:
        probe = redis.Redis(port=sentinel_port, socket_timeout=2)
        deadline = time.monotonic() + 30
        while probe.sentinel_get_master_addr_by_name(MASTER) is None:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"sentinel never learnt its master:\n{(work / 'sentinel.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        # Two entries (the second a sentinel that is not running): clients must try the next one.
        yield f"sentinel://127.0.0.1:{sentinel_port}/0;sentinel://127.0.0.1:{embedded.free_port()}/0"
    finally:
        sentinel.kill()
        master.kill()


# --- parsing --------------------------------------------------------------------------------------------


def test_plain_urls_pass_through_unchanged() -> None:
    target = redis_target.parse("redis://:pw@cache:6380/3")
    assert not target.is_sentinel
    assert target.url == "redis://:pw@cache:6380/3"
    assert target.transport_options() == {}
    assert target.redbeat_config() == {"redbeat_redis_url": "redis://:pw@cache:6380/3"}


def test_sentinel_url_lists_every_sentinel_and_takes_db_and_password_from_the_first() -> None:
    target = redis_target.parse("sentinel://:s%40cret@s1:26380/2;sentinel://s2;", "main")
    assert target.sentinels == (("s1", 26380), ("s2", 26379))
    assert (target.master, target.db, target.password) == ("main", 2, "s@cret")
    assert target.transport_options() == {"master_name": "main"}
    beat = target.redbeat_config()
    assert beat["redbeat_redis_url"] == "redis-sentinel://"
    assert beat["redbeat_redis_options"] == {
        "sentinels": [("s1", 26380), ("s2", 26379)],
        "service_name": "main",
        "db": 2,
        "password": "s@cret",
    }


@pytest.mark.parametrize(
    ("url", "master", "says"),
    [
        ("sentinel://s1:26379", "", "REDIS_SENTINEL_MASTER"),
        ("sentinel://s1:26379;redis://s2:6379", "m", "every ';'-separated entry"),
        ("sentinel://s1:26379/zero", "m", "database must be a number"),
        ("memcached://x", "", "must start with"),
    ],
)
def test_bad_sentinel_urls_are_refused_naming_the_problem(url: str, master: str, says: str) -> None:
    with pytest.raises(RedisUrlError, match=says):
        redis_target.parse(url, master)


def test_settings_refuse_a_sentinel_url_without_master_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "sentinel://s1:26379")
    monkeypatch.delenv("REDIS_SENTINEL_MASTER", raising=False)
    with pytest.raises(ValueError, match="REDIS_SENTINEL_MASTER"):
        Settings(_env_file=None)  # type: ignore[call-arg]


# --- against the real sentinel ------------------------------------------------------------------------------


def test_state_client_finds_the_master_through_sentinel(sentinel_url: str) -> None:
    client = redis_target.parse(sentinel_url, MASTER).client(decode_responses=True, socket_timeout=5)
    key = f"rdb24:test:sentinel:{uuid.uuid4().hex[:6]}"
    client.set(key, "через sentinel")
    assert client.get(key) == "через sentinel"
    assert client.info("replication")["role"] == "master"


def test_worker_round_trip_over_sentinel_urls(
    sentinel_url: str,
    worker_base_env: dict[str, str],
    tmp_path: Path,
) -> None:
    env = {**worker_base_env, "REDIS_URL": sentinel_url, "REDIS_SENTINEL_MASTER": MASTER}
    options = {"master_name": MASTER}
    caller = Celery("sentinel-caller", broker=sentinel_url, backend=sentinel_url, set_as_current=False)
    caller.conf.update(broker_transport_options=options, result_backend_transport_options=options)
    worker = CeleryWorker(
        caller, env, tmp_path / "worker.log", concurrency=2, include=("tests.support.probe_tasks",)
    )
    worker.control.conf.broker_transport_options = options
    try:
        worker.start(timeout=90)
        key = f"sentinel-{uuid.uuid4().hex[:6]}"
        result = caller.send_task("probe.flaky", kwargs={"key": key}, queue="flows").get(timeout=60)
        assert result == {"key": key, "calls": 1}
        state = redis_target.parse(sentinel_url, MASTER).client(decode_responses=True)
        assert state.get(calls_key(key)) == "1"  # the task's own Redis writes reached the master too
    finally:
        worker.stop(timeout=15)
        caller.close()
