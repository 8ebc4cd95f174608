"""Readiness probes for the stack's services, each a cheap call that returns True/False, never raises.

Used by ``rdb24 up`` to wait for every service before printing its table, and by tests. Celery
workers are probed with a broadcast ping through a bare Celery app on the same broker, so the probe
neither imports our task modules nor needs their settings.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
import requests

Probe = Callable[[], bool]


def http_ok(url: str, auth: tuple[str, str] | None = None, timeout: float = 2.0) -> Probe:
    def probe() -> bool:
        try:
            return requests.get(url, auth=auth, timeout=timeout).status_code < 400
        except requests.RequestException:
            return False

    return probe


def http_answers(url: str, timeout: float = 2.0) -> Probe:
    """Any HTTP answer at all (a 404 on ``/`` still means the server is up)."""

    def probe() -> bool:
        try:
            requests.get(url, timeout=timeout)
        except requests.RequestException:
            return False
        return True

    return probe


def redis_ok(url: str) -> Probe:
    def probe() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
        except (redis.RedisError, OSError):
            return False

    return probe


def kafka_ok(bootstrap: str, extra: dict[str, str] | None = None) -> Probe:
    def probe() -> bool:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": bootstrap, **(extra or {})}).list_topics(timeout=3)
        except KafkaException:
            return False
        return True

    return probe


def celery_workers(redis_url: str, timeout: float = 1.0) -> list[str]:
    """Names of the workers that answer a ping within ``timeout`` (empty when the broker is down)."""
    from celery import Celery

    app = Celery("rdb24-probe", broker=redis_url, set_as_current=False)
    try:
        replies = app.control.ping(timeout=timeout) or []
    except Exception:
        return []
    finally:
        app.close()
    return sorted(name for reply in replies for name in reply)


def workers_ok(redis_url: str, expected: set[str]) -> Probe:
    """Every expected worker (by node name prefix, e.g. ``worker_api@``) answers a ping."""

    def probe() -> bool:
        names = celery_workers(redis_url)
        return all(any(name.startswith(prefix) for name in names) for prefix in expected)

    return probe


def wait_until(probe: Probe, timeout: float, interval: float = 0.3) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
