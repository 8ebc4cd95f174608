"""The receiver's drain loop: spooled replies into Celery, each deleted only once the broker took it.

A daemon thread of the receiver process, so the event loop never waits on Redis. It forwards its own
spool and, every ``ADOPT_EVERY`` seconds, adopts the spools of dead receivers in the same directory
(``tasks.webhook.spool.orphans``) and forwards those too, deleting each file once empty. Rows go in
arrival order; the first one that cannot be forwarded (Redis down, broker refusing) stops the pass,
which is tried again with a capped backoff, so the order of one dialog's replies is kept.

Each row goes through :func:`tasks.flows.reply_intake.forward`, which publishes a reply once however
many copies of its event arrive (here or from the offline queue); a row whose reply another process
is publishing right now (``busy``) stays, and the pass stops there.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from loguru import logger
from pydantic import ValidationError

from schemas.dead_letters import DeadLetter, DeadLetterReason
from schemas.flows import OperatorReplyPayload
from tasks.flows.operator_reply import deliver_operator_reply
from tasks.flows.reply_intake import Enqueue, Forwarded, forward
from tasks.state.dead_letters import DeadLetterStore
from tasks.webhook.spool import Spool, Spooled, orphans

REPLY_TASK = deliver_operator_reply.name

ADOPT_EVERY = 10.0  # seconds between looks for dead receivers' spools
IDLE_WAIT = 1.0
BACKOFF_MAX = 10.0
FINAL_DRAIN = 10.0  # seconds a stopping receiver keeps forwarding (below the 30 s grace of deploy/)


class Drainer:
    """Runs the drain loop in a daemon thread; :meth:`wake` after a store, :meth:`stop` at shutdown."""

    def __init__(
        self,
        spool: Spool,
        redis_client: redis.Redis,
        *,
        enqueue: Enqueue,
        dedupe_ttl: int,
        directory: Path | None = None,
    ) -> None:
        self.spool = spool
        self._redis = redis_client
        self._enqueue = enqueue
        self._dedupe_ttl = dedupe_ttl
        self._directory = directory if directory is not None else spool.path.parent
        self._adopted: list[Spool] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-drain", daemon=True)
        self._next_adopt = 0.0

    def start(self) -> Drainer:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0, final_drain: float = FINAL_DRAIN) -> None:
        """Stop the loop, then forward what is left for up to ``final_drain`` seconds.

        A SIGTERM (redeploy, pod deletion) thus leaves nothing behind while Redis answers; rows that
        still cannot go stay in the file for the next receiver on the same directory.
        """
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + final_drain
        while self.depth() and time.monotonic() < deadline:
            try:
                if not self.drain_once():
                    time.sleep(0.2)  # a row waits for another publish's claim
            except Exception as exc:
                left = self.depth()
                logger.warning("webhook drain: {} row(s) left in the spool at shutdown ({})", left, exc)
                return
        for spool in self._adopted:
            spool.close()

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self._adopt_orphans()
                moved = self.drain_once()
                failures = 0
            except Exception as exc:  # Redis or the broker is down: keep every row, try again later
                failures += 1
                delay = min(BACKOFF_MAX, 0.5 * 2 ** min(failures, 5))
                logger.warning("webhook drain: forwarding failed ({}: {}); retry in {:.1f}s",
                               type(exc).__name__, str(exc)[:200], delay)  # fmt: skip
                self._stopping.wait(delay)
                continue
            if not moved:
                self._wake.wait(IDLE_WAIT)
                self._wake.clear()

    def drain_once(self) -> int:
        """One pass over every held spool; returns how many rows left the spools."""
        moved = 0
        for spool in [self.spool, *self._adopted]:
            moved += self._drain(spool)
        for spool in [s for s in self._adopted if s.depth() == 0]:
            self._adopted.remove(spool)
            spool.close(delete=True)
            logger.info("webhook drain: spool {} of a previous receiver emptied and removed", spool.path.name)
        return moved

    def _drain(self, spool: Spool) -> int:
        moved = 0
        for row in spool.oldest():
            try:
                payload = OperatorReplyPayload.model_validate_json(row.payload)
            except ValidationError as exc:  # written by an incompatible version: keep it, out of the way
                self._dead_letter(row, exc)
                spool.remove(row.row_id)
                continue
            outcome = forward(self._redis, self._enqueue, payload, row.task_id, dedupe_ttl=self._dedupe_ttl)
            if outcome is Forwarded.BUSY:
                break  # keep the order: this row first, on a later pass
            spool.remove(row.row_id)
            moved += 1
            if outcome is Forwarded.DUPLICATE:
                logger.info("webhook: {} already enqueued, duplicate event dropped", row.task_id)
            else:
                logger.info("webhook: enqueued {} for dialog {}", row.task_id, payload.chat_id)
        return moved

    def _dead_letter(self, row: Spooled, exc: ValidationError) -> None:
        """An unreadable row becomes a dead letter of the reply task (``rdb24 dlq replay`` after a fix)."""
        try:
            raw: object = json.loads(row.payload)
        except ValueError:
            raw = row.payload
        letter = DeadLetter(
            name=REPLY_TASK,
            payload=raw,
            reason=DeadLetterReason.INVALID_PAYLOAD,
            error=f"ValidationError: {str(exc)[:500]}",
            source={"task_id": row.task_id, "spool": self.spool.path.name},
        )
        DeadLetterStore(self._redis).add(letter)  # raises while Redis is down: the row stays
        logger.error("webhook drain: spooled reply {} is unreadable; dead-lettered", row.task_id)

    def _adopt_orphans(self) -> None:
        now = time.monotonic()
        if now < self._next_adopt:
            return
        self._next_adopt = now + ADOPT_EVERY
        try:
            self._adopt(orphans(self._directory, self.spool.path))
        except (OSError, sqlite3.Error) as exc:  # a bad file must not stop our own spool's drain
            logger.error("webhook drain: could not adopt spools in {}: {}", self._directory, exc)

    def _adopt(self, found: Iterator[Spool]) -> None:
        held = {s.path for s in self._adopted}
        for orphan in found:
            if orphan.path in held:
                orphan.close()
                continue
            logger.info("webhook drain: adopted spool {} ({} rows)", orphan.path.name, orphan.depth())
            self._adopted.append(orphan)

    def depth(self) -> int:
        """Rows waiting in every spool held (read from another thread: ``/health``)."""
        total = self.spool.depth()
        for adopted in list(self._adopted):
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed meanwhile: it was empty
                total += adopted.depth()
        return total


__all__ = ["Drainer"]
