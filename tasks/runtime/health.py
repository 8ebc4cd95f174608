"""Health probes of the running system that production tools use (``rdb24 status``, container probes).

Workers are pinged through a bare Celery app on the same broker: the probe neither imports our task
modules nor needs their settings, and it never raises (a broker that is down means "no workers").
"""

from __future__ import annotations


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
