"""The run state file of ``rdb24 up``: how ``rdb24 status``/``rdb24 demo`` find the running stack.

It holds the environment the stack resolved (URLs and the stand-ins' credentials) and the pid of
every process, so tools and tests can reach the stack and check that nothing outlives it. The file
is private to the user (mode 0600) because it carries the simulators' logins; it is removed when the
stack stops.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import BaseModel, Field

DEFAULT_RUN_DIR = Path("var")
STATE_FILE = "stack.json"
ENV_FILE = "stack.env"


class ServiceRow(BaseModel):
    """One line of the start table."""

    name: str
    source: str
    url: str = ""
    credentials: str = ""


class StackState(BaseModel):
    pid: int  # the `rdb24 up` process
    run_dir: str
    ready: bool = False
    env: dict[str, str] = Field(default_factory=dict)  # overrides our processes run with
    services: list[ServiceRow] = Field(default_factory=list)
    pids: dict[str, int] = Field(default_factory=dict)  # every supervised and embedded process
    urls: dict[str, str] = Field(default_factory=dict)  # rosdomofon, bitrix24, webhook, flower, ...

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_state(state: StackState) -> Path:
    run_dir = Path(state.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / STATE_FILE
    _write_private(path, state.model_dump_json(indent=2))
    env_lines = [f"{key}={_dotenv_quote(value)}" for key, value in sorted(state.env.items())]
    _write_private(run_dir / ENV_FILE, "\n".join(env_lines) + "\n")
    return path


def _dotenv_quote(value: str) -> str:
    if value and all(ch.isalnum() or ch in "-_.:/@%+,=" for ch in value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def read_state(run_dir: Path = DEFAULT_RUN_DIR) -> StackState | None:
    """The state of a stack that is still running, else None (a stale file is ignored)."""
    path = Path(run_dir) / STATE_FILE
    try:
        state = StackState.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if state.alive else None


def remove_state(run_dir: Path) -> None:
    for name in (STATE_FILE, ENV_FILE):
        with contextlib.suppress(FileNotFoundError):
            (Path(run_dir) / name).unlink()
