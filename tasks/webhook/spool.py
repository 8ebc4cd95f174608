"""The receiver's durable spool: every event is on disk, fsynced, before Bitrix24 gets its 200.

Bitrix24 calls a handler once and never again (bitrix24-api.md §11), so an event must not depend on
Redis, Celery or this process staying up after the answer. Each receiver process writes the replies
of an event, all or none, into its own SQLite file (``WEBHOOK_SPOOL_DIR``/``spool-<host>-<pid>.sqlite3``,
WAL journal, ``synchronous=FULL``: the commit returns after fsync) and answers; the drain loop
(``tasks.webhook.drain``) publishes the rows to Celery and deletes each one only after the broker took it.

One file per process, each held with an exclusive ``flock`` on ``<file>.lock`` for the process's life:
the kernel drops the lock when the process dies (also ``kill -9``), so a receiver started later finds
the unlocked files of dead receivers (:func:`orphans`), adopts them and drains them too, then deletes
them. The directory must be on a local file system of the host (``flock`` is unreliable over NFS).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tasks.errors import SpoolBusyError

SUFFIX = ".sqlite3"
PREFIX = "spool-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    received_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Spooled:
    row_id: int
    task_id: str
    payload: str  # OperatorReplyPayload JSON
    received_at: float


class Spool:
    """One SQLite spool file, held by this process; thread-safe (one connection behind a mutex)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_file = _hold(path.with_name(path.name + ".lock"))
        self._mutex = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(_SCHEMA)

    @classmethod
    def for_this_process(cls, directory: Path) -> Spool:
        """This process's spool; a file of the same name still held (pid reuse) gets a suffix."""
        directory.mkdir(parents=True, exist_ok=True)
        base = f"{PREFIX}{socket.gethostname()}-{os.getpid()}"
        for attempt in range(100):
            name = base if attempt == 0 else f"{base}.{attempt}"
            try:
                return cls(directory / f"{name}{SUFFIX}")
            except SpoolBusyError:
                continue
        raise SpoolBusyError(f"no free spool name for {base} in {directory}")

    def store(self, rows: list[tuple[str, str]]) -> None:
        """Write ``(task id, payload JSON)`` rows in one transaction; returns once they are on disk."""
        now = time.time()
        with self._mutex:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO replies (task_id, payload, received_at) VALUES (?, ?, ?)",
                    [(task_id, payload, now) for task_id, payload in rows],
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def oldest(self, limit: int = 100) -> list[Spooled]:
        """The rows not yet forwarded, in arrival order."""
        with self._mutex:
            found = self._conn.execute(
                "SELECT id, task_id, payload, received_at FROM replies ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [Spooled(*row) for row in found]

    def remove(self, row_id: int) -> None:
        with self._mutex:
            self._conn.execute("DELETE FROM replies WHERE id = ?", (row_id,))

    def depth(self) -> int:
        with self._mutex:
            return int(self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def writable(self) -> bool:
        """Whether a write would succeed now (for ``/health``): the file is open and the disk answers."""
        try:
            with self._mutex:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            return False
        return True

    def close(self, *, delete: bool = False) -> None:
        """Close; ``delete`` removes the files (only for an empty, adopted spool)."""
        with self._mutex:
            self._conn.close()
        if delete:
            for extra in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    Path(str(self.path) + extra).unlink()
        lock_path = Path(self._lock_file.name)
        if delete:
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
        self._lock_file.close()


def orphans(directory: Path, own: Path) -> Iterator[Spool]:
    """Spools left by dead receivers in ``directory``, each now held by us (live ones are skipped)."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(f"{PREFIX}*{SUFFIX}")):
        if path == own:
            continue
        try:
            yield Spool(path)
        except SpoolBusyError:
            continue  # its receiver is alive and drains it itself


def _hold(lock_path: Path) -> IO[str]:
    handle = lock_path.open("a")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SpoolBusyError(f"{lock_path} is held by a live receiver") from None
    return handle


__all__ = ["Spool", "Spooled", "orphans"]
