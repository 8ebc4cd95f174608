"""The run lock: never two reconciliations at once, and a dead run never blocks the next for long.

A redis-py lock (``SET NX PX`` with a random token; release and extend check the token) with a short
TTL, kept alive by a heartbeat thread while the run works. If the worker is killed (``kill -9``,
OOM) the heartbeat dies with it and the lock lapses within ``ttl`` seconds, so the next scheduled or
manual run can start and resume. A second run that finds the lock held does not wait: it reports
``skipped`` (beat will try again at the next interval).

The lock fences: a run that lost it (stopped past its TTL, Redis away, taken by the next run) stops
writing. :meth:`RunLock.ensure_held` runs before every write of the run (each batch, each
fingerprint save, the accounts index, the field setup) and raises
:class:`~tasks.errors.LeaseLostError` when the heartbeat saw the lock lapse or the key no longer
holds our token; the task then retries and, finding the lock held, reports ``skipped``.
"""

from __future__ import annotations

import threading
from types import TracebackType

import redis
from loguru import logger
from redis.exceptions import LockError, RedisError

from tasks.errors import LeaseLostError
from tasks.state import keys

RUN_LOCK_KEY = keys.RECONCILE_RUN_LOCK


class RunLock:
    def __init__(self, client: redis.Redis, *, ttl: float = 60.0, key: str = RUN_LOCK_KEY) -> None:
        self.client = client
        self.ttl = ttl
        self.key = key
        self._lock = client.lock(key, timeout=ttl, blocking=False, thread_local=False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def acquire(self) -> bool:
        if not self._lock.acquire(blocking=False):
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="reconcile-lock", daemon=True)
        self._thread.start()
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._lock.extend(self.ttl, replace_ttl=True)
            except LockError as exc:
                # Expired (and maybe taken): final. The run's next write sees it and stops.
                self.lost = True
                logger.warning("reconcile run lock lost: {}; the run stops writing", exc)
                return
            except RedisError as exc:
                # Redis away for a moment: try again; ensure_held asks Redis itself before writing.
                logger.warning("reconcile run lock not extended: {}; trying again", exc)

    def held(self) -> bool:
        """Whether the lock key still holds our token (asks Redis; a lapse seen once is final)."""
        if self.lost:
            return False
        if not self._lock.owned():
            self.lost = True
        return not self.lost

    def ensure_held(self) -> None:
        """Call before each write of the run: raises ``LeaseLostError`` once the lock is not ours."""
        if not self.held():
            raise LeaseLostError(
                "reconcile run lock lost while the run was writing; stopping", retry_after=1.0
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self._lock.release()
        except LockError:
            logger.warning("reconcile run lock had already lapsed at release")

    def held_by_someone(self) -> bool:
        return bool(self.client.exists(self.key))

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is not None:
            self.release()


__all__ = ["RUN_LOCK_KEY", "RunLock"]
