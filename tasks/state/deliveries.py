"""Starts without a finish per task id: how a message that kills its worker ends in a dead letter.

Late acks with ``task_reject_on_worker_lost`` requeue a message whose worker process died (OOM,
segfault, ``os._exit``, the hard time limit), which is what we want for a crash that happens once,
and a loop for a message that crashes every worker it reaches. So each run of a task counts its
start (``INCR`` with a TTL on ``rdb24:starts:<task id>``) and deletes the count when it finishes in
any way a Python process can (success, retry, dead letter, exception). A count that is already
``MAX_WORKER_CRASHES`` at the next start means that many processes died running it: the message is
dead-lettered (``worker_crashed``) instead of run again. Retries keep the task id, but each one
finished before the next started, so they never add up.
"""

from __future__ import annotations

import redis

from tasks.state import keys

STARTS_PREFIX = keys.STARTS_PREFIX
STARTS_TTL = 7 * 24 * 3600  # a crash count older than a week is of a message long since handled


def starts_key(task_id: str) -> str:
    return f"{STARTS_PREFIX}:{task_id}"


def count_start(client: redis.Redis, task_id: str, *, ttl: int = STARTS_TTL) -> int:
    """Record one start; returns how many starts of ``task_id`` never finished before this one."""
    key = starts_key(task_id)
    with client.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, ttl)
        started, _ = pipe.execute()
    return int(started) - 1


def count_finish(client: redis.Redis, task_id: str) -> None:
    """The run ended without killing its process: its earlier starts are no longer crashes."""
    client.delete(starts_key(task_id))


__all__ = ["STARTS_PREFIX", "count_finish", "count_start", "starts_key"]
