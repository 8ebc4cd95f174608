"""Driving and observing the flow tasks from a test: run the stalled-message sweep now, see the queues
drained."""

from __future__ import annotations

from typing import Any

import redis

from tests.support.waiting import wait_result


def resend_stalled(older_than: float = 0.0) -> dict[str, Any]:
    """Run the in-flight ledger's sweep now (as beat would) and return its result."""
    from tasks.runtime.app import app

    task = app.send_task("flows.resend_stalled_messages", kwargs={"older_than": older_than})
    return wait_result(task.id)


def queues_drained(client: redis.Redis) -> bool:
    """No flow work queued, reserved or unacked on this module's broker DB."""
    return (
        all(client.llen(q) == 0 for q in ("flows", "bitrix24", "rosdomofon")) and client.hlen("unacked") == 0
    )


__all__ = ["queues_drained", "resend_stalled"]
