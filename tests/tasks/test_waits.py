"""Every wait has an end: Redis clients time out on a frozen server, tasks have time limits below the
visibility timeout, and a lock holder never blocks on its keep-alive thread."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from pydantic import ValidationError

from sandbox.stack import embedded
from tasks.runtime import app as app_module
from tasks.runtime import resources
from tasks.settings import BRPOP_TIMEOUT, Settings
from tasks.state import effects

FAST = {"RETRY_BACKOFF_MAX": "1", "RATE_LIMIT_WAIT_MAX": "1"}


def test_time_limits_must_run_soft_then_hard_then_visibility() -> None:
    with pytest.raises(ValidationError, match="TASK_SOFT_TIME_LIMIT"):
        Settings(TASK_SOFT_TIME_LIMIT=50, TASK_TIME_LIMIT=40)
    with pytest.raises(ValidationError, match="VISIBILITY_TIMEOUT"):
        Settings(VISIBILITY_TIMEOUT=30, TASK_SOFT_TIME_LIMIT=20, TASK_TIME_LIMIT=30, **FAST)
    assert Settings(
        VISIBILITY_TIMEOUT=30, TASK_SOFT_TIME_LIMIT=20, TASK_TIME_LIMIT=25, **FAST
    ).time_limits == (
        20,
        25,
    )


def test_unset_time_limits_scale_down_with_a_short_visibility_timeout() -> None:
    assert Settings().time_limits == (3000.0, 3300.0)
    soft, hard = Settings(VISIBILITY_TIMEOUT=10, **FAST).time_limits
    assert soft < hard < 10


def test_socket_timeout_must_exceed_the_brpop_timeout() -> None:
    with pytest.raises(ValidationError, match="REDIS_SOCKET_TIMEOUT"):
        Settings(REDIS_SOCKET_TIMEOUT=BRPOP_TIMEOUT)


def test_celery_gets_time_limits_and_bounded_redis_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks import settings as settings_module

    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", "12")
    monkeypatch.setenv("TASK_SOFT_TIME_LIMIT", "100")
    monkeypatch.setenv("TASK_TIME_LIMIT", "120")
    settings_module.get_settings.cache_clear()
    try:
        conf = app_module.celery_config()
    finally:
        settings_module.get_settings.cache_clear()
    assert (conf["task_soft_time_limit"], conf["task_time_limit"]) == (100, 120)
    transport = conf["broker_transport_options"]
    assert transport["socket_timeout"] == 12 and transport["socket_keepalive"] is True
    assert transport["socket_connect_timeout"] > 0 and transport["health_check_interval"] > 0
    assert conf["redis_socket_timeout"] == 12 and conf["redis_socket_keepalive"] is True


@pytest.fixture
def frozen_redis() -> Iterator[tuple[embedded.EmbeddedServer, Settings]]:
    """A Valkey of our own that the test may SIGSTOP, and settings with a 2 s socket timeout."""
    server = embedded.valkey().start()
    settings = Settings(REDIS_URL=f"redis://127.0.0.1:{server.port}/0", REDIS_SOCKET_TIMEOUT=2)
    try:
        yield server, settings
    finally:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGCONT)
        server.kill()


def test_state_client_gives_up_on_a_frozen_redis(
    frozen_redis: tuple[embedded.EmbeddedServer, Settings],
) -> None:
    server, settings = frozen_redis
    client = resources.state_redis(settings)
    client.set("k", "v")
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.get("k")
    assert time.monotonic() - started < 2 * settings.redis_socket_timeout + 1


def test_lock_release_is_bounded_when_redis_freezes_under_the_keeper(
    frozen_redis: tuple[embedded.EmbeddedServer, Settings],
) -> None:
    server, settings = frozen_redis
    client = resources.state_redis(settings)
    assert server.process is not None
    finished = threading.Event()

    def hold() -> None:
        with effects.locked(client, "frozen", timeout=0.9, wait=1):
            os.kill(server.process.pid, signal.SIGSTOP)  # the keeper's renewal now hangs on its socket
            time.sleep(0.5)
        finished.set()  # only reached if leaving the block neither hung nor raised

    holder = threading.Thread(target=hold, daemon=True)
    started = time.monotonic()
    holder.start()
    # Join at most KEEPER_JOIN_TIMEOUT, then the release's own command times out on its socket.
    bound = effects.KEEPER_JOIN_TIMEOUT + 2 * settings.redis_socket_timeout + 3
    assert finished.wait(bound), "leaving the locked block hung on a frozen Redis"
    assert time.monotonic() - started < bound
