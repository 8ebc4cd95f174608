"""``rdb24 webhook`` as its own process, as production runs it, for tests that need the receiver."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox.stack.embedded import free_port, wait_for_port
from tests.support.paths import REPO_ROOT


@dataclass
class WebhookServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_webhook(env: dict[str, str], log_path: Path, port: int | None = None) -> WebhookServer:
    """Start the receiver on ``port`` (a free one by default) and wait until it accepts connections."""
    port = port or free_port()
    env = {"WEBHOOK_SPOOL_DIR": str(log_path.parent / "webhook-spool"), **env}  # never the repo's var/
    log = log_path.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tasks.cli import main; main()",
            "webhook",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    server = WebhookServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_for_port("127.0.0.1", port, timeout=30, proc=process)
    except Exception:
        server.stop()
        raise RuntimeError(f"webhook receiver did not start:\n{server.logs()[-3000:]}") from None
    return server


__all__ = ["WebhookServer", "start_webhook"]
