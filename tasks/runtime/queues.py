"""The Celery queues, declared once; a task's queue is chosen by its name's prefix.

One queue per outside service so a slow or rate-limited service only backs up its own queue: a
Bitrix24 rate limit never delays RosDomofon calls, and bulk reconciliation never delays a subscriber's
message. Deployments may run one worker per queue (``-Q bitrix24``); by default a worker takes all.
"""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    ROSDOMOFON = "rosdomofon"  # RosDomofon REST operations
    BITRIX24 = "bitrix24"  # Bitrix24 REST operations (shared portal rate limit)
    FLOWS = "flows"  # message and reply chains: cheap orchestration steps
    RECONCILE = "reconcile"  # periodic bulk sync; may be slow, must not delay flows


# Task-name prefix -> queue. A name with no known prefix goes to FLOWS (the default queue).
PREFIX_QUEUES: dict[str, Queue] = {
    "rosdomofon.": Queue.ROSDOMOFON,
    "bitrix24.": Queue.BITRIX24,
    "flows.": Queue.FLOWS,
    "ingest.": Queue.FLOWS,
    "reconcile.": Queue.RECONCILE,
}

DEFAULT_QUEUE = Queue.FLOWS

# Queues declared by ``@operation`` (filled by tasks.runtime.operation); they win over the prefix rule.
DECLARED: dict[str, Queue] = {}


def queue_for(task_name: str) -> Queue:
    """The queue a task name belongs to: as declared by its ``@operation``, else by its dotted prefix."""
    if task_name in DECLARED:
        return DECLARED[task_name]
    for prefix, queue in PREFIX_QUEUES.items():
        if task_name.startswith(prefix):
            return queue
    return DEFAULT_QUEUE


def route_task(
    name: str, args: object, kwargs: object, options: object, task: object = None, **kw: object
) -> dict[str, str]:
    """Celery router: every task, including ``send_task`` by name from other services, by prefix."""
    return {"queue": queue_for(name).value}
