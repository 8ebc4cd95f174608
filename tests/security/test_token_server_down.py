"""When the OAuth token server cannot be reached, the refresh request's URL (which carries the client
secret and the refresh token as query parameters) ends in exception text: it must be masked in the
logs, the dead letters and the stored results.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.stack.embedded import free_port
from tests.faults.harness import Stack, StackOptions
from tests.support.secret_scan import find_leaks


@pytest.mark.process
def test_refresh_failure_does_not_leak_secrets(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/rest/"  # nothing listens: connection refused
    options = StackOptions(
        accounts=6, log_level="DEBUG", env={"BITRIX24_SERVER_ENDPOINT": closed, "MAX_RETRIES": "1"}
    )
    with Stack(tmp_path, options) as stack:
        assert stack.sims is not None
        stack.sims.bitrix24.expire_access_tokens()  # the first call must refresh, and cannot
        stack.worker("worker1")
        stack.ingest()
        stack.send(3, stack.subscribers(3))
        stack.wait_until(lambda: len(stack.dead_letters()) >= 1, 90, "a dead letter from the failed refresh")
        letters = stack.dead_letters()
        assert any("oauth" in d.error.lower() or "token" in d.error.lower() for d in letters), letters
        client = stack.redis()
        sources = [(name, text) for name, text in stack.logs()]
        sources += [(d.id, d.model_dump_json()) for d in letters]
        sources += [(k, client.get(k) or "") for k in client.scan_iter(match="celery-task-meta-*")]
        secrets = stack.secrets.named()
        secrets.update({f"issued token #{i}": t for i, t in enumerate(stack.sims.issued_tokens())})
        leaks = find_leaks(secrets, sources)
        assert not leaks, "\n".join(map(str, leaks))
