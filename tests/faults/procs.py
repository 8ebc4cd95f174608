"""Child processes the fault scenarios start, crash and restart: workers, ingest, beat, webhook, Flower.

Each process runs in its own session (process group), so ``kill -9`` takes the prefork children down
with the parent, as a machine crash would, while ``terminate`` signals only the parent, as a process
manager does. Every generation appends to one log file per process, so the security checks can scan
everything a process ever printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.stack import lifeline

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"


class ProcessFailedError(AssertionError):
    """A managed process exited when it should not have, or did not reach the expected state."""


@dataclass
class ManagedProcess:
    """A restartable child process whose whole output is kept in ``log_path``."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    _reaped: bool = False

    def start(self) -> ManagedProcess:
        if self.running:
            raise ProcessFailedError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start #{self.starts + 1}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,
                preexec_fn=lifeline.parent_death_signal(signal.SIGKILL),  # gone with the test session
            )
        self._reaped = False
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def crashed(self) -> bool:
        """Exited on its own: not through :meth:`kill`/:meth:`terminate` of this object."""
        return self.process is not None and self.process.poll() is not None and not self._reaped

    def kill(self) -> None:
        """``kill -9`` the process and every child of its group: no shutdown code runs."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._reap(10.0)

    def terminate(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` to the parent only and wait for it to exit; return its exit code."""
        if not self.running:
            return self._reap(0.1)
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            return self._reap(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ProcessFailedError(f"{self.name} ignored signal {sig} for {timeout:g}s; killed") from None

    def restart(self) -> ManagedProcess:
        self.kill()
        return self.start()

    def _reap(self, timeout: float) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        # Children of a group whose leader exited may linger: take them down too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.exit_codes.append(code)
        self._reaped = True
        return code

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_output(self, pattern: str, timeout: float = 30.0, *, after: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears in the log past character ``after``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = regex.search(self.output(), after)
            if found:
                return found
            if self.process is not None and self.process.poll() is not None:
                raise ProcessFailedError(
                    f"{self.name} exited with {self.process.returncode} before printing {pattern!r}:\n"
                    + self.tail()
                )
            time.sleep(0.1)
        raise ProcessFailedError(
            f"{self.name} did not print {pattern!r} within {timeout:g}s:\n" + self.tail()
        )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


def venv_command(name: str) -> str:
    """Path of a console script of this project's virtualenv (``celery``, ``rdb24``, ``moto_server``)."""
    path = VENV_BIN / name
    if not path.exists():
        raise ProcessFailedError(f"{path} is missing: run `make install`")
    return str(path)


__all__ = ["REPO_ROOT", "ManagedProcess", "ProcessFailedError", "venv_command"]
