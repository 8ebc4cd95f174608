"""Session fixtures that start real servers: Redis (or bundled Valkey) and Kafka (bundled Tansu).

Locally a missing service skips the tests that need it; under ``CI=true`` it fails them, so CI can
never pass by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import redis

from sandbox.stack import embedded, lifeline

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM/SIGHUP stop a session like Ctrl-C: fixture finalisers run and stop their servers.

    (A ``kill -9`` of the session runs no code at all; the servers' parent-death signal covers that.)
    """
    lifeline.stop_cleanly_on()


def service_missing(message: str) -> None:
    """Fail under CI, skip locally: a service a test needs is not available."""
    if IN_CI:
        pytest.fail(f"required service unavailable in CI: {message}")
    pytest.skip(message)


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


CLAIM_KEY = "rdb24:test-session-claim"
CLAIM_TTL = 3 * 3600


def _claim_holder_alive(value: bytes | None) -> bool:
    """A claim is ``<pid>-<random>``; it is stale once that process is gone (killed runs leave claims)."""
    if value is None:
        return False
    try:
        pid = int(value.split(b"-", 1)[0])
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_free_db(base_url: str) -> str:
    """Pick a database index nobody else is using, so parallel test sessions never share keys.

    Free indexes are taken first; then indexes whose claiming process has died. Never one that a
    live session holds: sharing a database would let one session's worker eat another's tasks.
    """
    parsed = urlparse(base_url)
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    urls = [parsed._replace(path=f"/{db}").geturl() for db in range(1, 16)]
    for url in urls:
        client = redis.Redis.from_url(url)
        if client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_TTL):
            if client.dbsize() > 1:
                client.flushdb()
                client.set(CLAIM_KEY, token, ex=CLAIM_TTL)
            return url
    for url in urls:
        client = redis.Redis.from_url(url)
        with client.pipeline() as pipe:
            try:
                pipe.watch(CLAIM_KEY)
                if _claim_holder_alive(pipe.get(CLAIM_KEY)):
                    continue
                pipe.multi()
                pipe.flushdb()
                pipe.set(CLAIM_KEY, token, ex=CLAIM_TTL)
                pipe.execute()
                return url
            except redis.WatchError:
                continue
    raise RuntimeError("every Redis database 1-15 is claimed by a live test session")


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """Base URL of a running Redis: ``REDIS_URL`` when it answers, else a bundled Valkey."""
    candidates = [os.environ.get("REDIS_URL", ""), "redis://127.0.0.1:6379/0"]
    for url in filter(None, candidates):
        if _redis_answers(url):
            yield url
            return
    try:
        server = embedded.valkey().start()
    except embedded.EmbeddedServiceError as exc:
        service_missing(f"no Redis at REDIS_URL and bundled Valkey failed: {exc}")
        return
    try:
        yield f"redis://127.0.0.1:{server.port}/0"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server_url: str) -> Iterator[str]:
    """A Redis URL whose database index this test session owns (flushed at start and end)."""
    url = _claim_free_db(redis_server_url)
    try:
        yield url
    finally:
        redis.Redis.from_url(url).flushdb()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[embedded.EmbeddedServer]:
    """A bundled Tansu broker with memory storage on a free port, for the whole session."""
    try:
        server = embedded.tansu().start()
    except embedded.EmbeddedServiceError as exc:
        service_missing(f"bundled Tansu broker failed to start: {exc}")
        return
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_server: embedded.EmbeddedServer) -> str:
    return f"{kafka_server.host}:{kafka_server.port}"


def create_topics(bootstrap: str, *names: str, partitions: int = 1) -> None:
    """Create topics and wait until the broker confirms them (existing topics are fine)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
    )
    for future in futures.values():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


@pytest.fixture
def unique() -> str:
    """A short unique token for names that must not collide between tests."""
    return uuid.uuid4().hex[:10]


pytest_plugins = [
    "tests.support.worker_fixtures",
    "tests.support.rosdomofon_fixtures",
    "tests.support.bitrix24_fixtures",
    "tests.support.parallel_run",
    "tests.support.process_marker",
]
