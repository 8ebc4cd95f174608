"""Readiness probes for the stack's services, each a cheap call that returns True/False, never raises.

Used by ``rdb24 up`` (``wiring``) to wait for every service before printing its table. Celery workers
are probed with a broadcast ping through a bare Celery app on the same broker, so the probe neither
imports our task modules nor needs their settings. ``rdb24 status`` has its own copy of the ping in
``tasks.runtime.health``: the simulators' package may not import the task layer, and the production
image does not ship ``sandbox``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

Probe = Callable[[], bool]


def http_ok(url: str, auth: tuple[str, str] | None = None, timeout: float = 2.0) -> Probe:
    def probe() -> bool:
        try:
            return requests.get(url, auth=auth, timeout=timeout).status_code < 400
        except requests.RequestException:
            return False

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
