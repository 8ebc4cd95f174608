"""A message fetched just as Redis goes away is requeued once Redis is back (``tasks.runtime.broker``).

Real Valkey of the test's own (it is stopped mid-test), real kombu channel of our transport: the
message leaves its queue (as BRPOP takes it), Redis stops before the ``unacked`` record is written,
and kombu alone would have lost it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from kombu import Connection, Exchange, Producer
from kombu import Queue as KombuQueue
from kombu.common import ignore_errors
from kombu.transport import redis as kombu_redis

from sandbox.stack import embedded
from tasks.runtime import broker
from tasks.runtime.app import RESTORE_MUTEX_EXPIRE

QUEUE = "outage-test"
pytestmark = pytest.mark.process  # stops and restarts a Valkey of its own


@pytest.fixture
def valkey_server() -> Iterator[embedded.EmbeddedServer]:
    try:
        server = embedded.valkey().start()
    except embedded.EmbeddedServiceError as exc:
        pytest.skip(str(exc))
    yield server
    server.kill()


def test_message_fetched_as_redis_stops_is_requeued_when_it_returns(
    valkey_server: embedded.EmbeddedServer,
) -> None:
    url = f"redis://127.0.0.1:{valkey_server.port}/0"
    client = redis.Redis.from_url(url, socket_timeout=5)
    exchange = Exchange(QUEUE, type="direct")
    options = {"visibility_timeout": 60}
    with Connection(url, transport=broker.Transport, transport_options=options) as conn:
        channel = conn.default_channel
        KombuQueue(QUEUE, exchange, routing_key=QUEUE, channel=channel).declare()
        Producer(channel).publish({"n": 1}, exchange=exchange, routing_key=QUEUE, headers={"id": "t-1"})
        assert client.llen(QUEUE) == 1

        message = channel.basic_get(QUEUE, no_ack=True)  # taken off the queue, nothing recorded yet
        assert message is not None and client.llen(QUEUE) == 0
        before = broker.stranded_count()
        valkey_server.stop()
        with pytest.raises(channel.connection_errors):
            channel.qos.append(message, message.delivery_tag)  # kombu's unacked record fails
        assert broker.stranded_count() == before + 1

    valkey_server.start()  # empty (no persistence here)
    # As a worker does after reconnecting: a new connection declares its queues, then the periodic
    # restore sweep runs.
    with Connection(url, transport=broker.Transport, transport_options=options) as conn:
        channel = conn.default_channel
        KombuQueue(QUEUE, exchange, routing_key=QUEUE, channel=channel).declare()
        channel.qos.restore_visible()

    assert broker.stranded_count() == before
    raw = client.rpop(QUEUE)
    assert raw is not None, "the stranded message was not requeued"
    payload = json.loads(raw)
    assert payload["headers"]["id"] == "t-1"
    assert payload["headers"]["redelivered"] is True
    assert payload["properties"]["body_encoding"] == "base64"
    assert json.loads(base64.b64decode(payload["body"])) == {"n": 1}


def test_closing_a_channel_after_connection_loss_does_not_crash(
    valkey_server: embedded.EmbeddedServer,
) -> None:
    """The state Celery's consumer leaves after a connection loss: pools dropped, transport detached
    (``collect``), a fetched message still unacked. kombu alone raises AttributeError from ``close``,
    which ``ignore_errors`` does not catch, and the worker process dies."""
    url = f"redis://127.0.0.1:{valkey_server.port}/0"
    client = redis.Redis.from_url(url, socket_timeout=5)
    exchange = Exchange(QUEUE, type="direct")
    conn = Connection(url, transport=broker.Transport, transport_options={"visibility_timeout": 60})
    channel = conn.default_channel
    KombuQueue(QUEUE, exchange, routing_key=QUEUE, channel=channel).declare()
    Producer(channel).publish({"n": 2}, exchange=exchange, routing_key=QUEUE)
    message = channel.basic_get(QUEUE, no_ack=False)
    assert message is not None and client.hlen("unacked") == 1

    valkey_server.stop()
    channel._disconnect_pools()
    conn._do_close_transport()
    ignore_errors(conn, conn.close)  # raised AttributeError with kombu's own channel
    assert conn._closed


def test_restore_sweep_mutex_left_by_a_killed_worker_expires_within_seconds(
    celery_app: Celery, redis_url: str
) -> None:
    """Every worker sweeps ``unacked`` under one Redis mutex. A worker killed inside a sweep never
    releases it; with kombu's default (300 s) no message of any crashed worker came back for five
    minutes (seen in the kill -9 fault scenario: three messages stuck in ``unacked``)."""
    client = redis.Redis.from_url(redis_url)
    with celery_app.connection_for_write() as conn:
        qos = conn.default_channel.qos
        sweep = kombu_redis.Mutex(client, qos.unacked_mutex_key, qos.unacked_mutex_expire)
        sweep.__enter__()  # the sweep starts, then the process dies: no __exit__, no release
        try:
            ttl = client.ttl(qos.unacked_mutex_key)
            assert 0 < ttl <= RESTORE_MUTEX_EXPIRE < 300
            other = kombu_redis.Mutex(client, qos.unacked_mutex_key, qos.unacked_mutex_expire)
            with pytest.raises(kombu_redis.MutexHeld), other:  # meanwhile every other sweep is skipped
                pass
        finally:
            client.delete(qos.unacked_mutex_key)
