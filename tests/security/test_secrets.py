"""No secret of a full run appears in a log line, an exception, a task argument shown in Flower, a
dead letter, a stored result or a metric.

Secrets: the RosDomofon password and every token it issued, the Bitrix24 webhook secret, OAuth client
secret, application token and every access/refresh token the portal issued (incl. rotated ones), and
the Flower password. The run (see conftest) used DEBUG logs, faults that force re-authentication,
an operator reply (its event carries the application token and an access token) and a dead letter.
"""

from __future__ import annotations

import requests

from tasks.state.keys import BITRIX24_NAMESPACE
from tests.security.conftest import SecureRun
from tests.support.secret_scan import find_leaks

# clients.bitrix24 token store (RedisKeys.oauth_token): holds the live pair by design
TOKEN_STORE_PREFIX = f"{BITRIX24_NAMESPACE}:oauth:"


def all_secrets(run: SecureRun) -> dict[str, str]:
    assert run.stack.sims is not None
    found = run.stack.secrets.named()
    for index, token in enumerate(run.stack.sims.issued_tokens()):
        found[f"issued token #{index}"] = token
    return found


def test_run_was_real(secure_run: SecureRun) -> None:
    """The scans below mean something only if the run produced traffic, retries and a reply."""
    assert secure_run.stack.sims is not None
    logs = dict(secure_run.stack.logs())
    assert any("message posted" in text for text in logs.values()), sorted(logs)
    assert len(secure_run.stack.sims.issued_tokens()) >= 3, "no re-authentication happened"
    assert secure_run.stack.dead_letters(), "the run left no dead letter to inspect"


def test_no_secret_in_any_process_output(secure_run: SecureRun) -> None:
    logs = list(secure_run.stack.logs())
    assert {name for name, _ in logs} >= {
        "worker1.log",
        "ingest.log",
        "beat.log",
        "webhook.log",
        "flower.log",
    }
    leaks = find_leaks(all_secrets(secure_run), logs)
    assert not leaks, "\n".join(map(str, leaks))


def test_no_secret_in_flower_task_view(secure_run: SecureRun) -> None:
    response = requests.get(
        f"{secure_run.flower_url}/api/tasks", params={"limit": 2000}, auth=secure_run.flower_auth, timeout=15
    )
    assert response.status_code == 200, response.text[:300]
    tasks = response.json()
    names = {t.get("name") for t in tasks.values()}
    assert {"flows.post_to_chat", "flows.deliver_operator_reply"} <= names, names
    sources = [("flower /api/tasks", response.text)]
    for task_id in list(tasks)[:50]:
        info = requests.get(
            f"{secure_run.flower_url}/api/task/info/{task_id}", auth=secure_run.flower_auth, timeout=15
        )
        sources.append((f"flower /api/task/info/{task_id}", info.text))
    leaks = find_leaks(all_secrets(secure_run), sources)
    assert not leaks, "\n".join(map(str, leaks))


def test_no_secret_in_metrics(secure_run: SecureRun) -> None:
    sources = []
    for url in [*secure_run.metrics_urls, f"{secure_run.flower_url}/metrics"]:
        response = requests.get(url, timeout=15, auth=secure_run.flower_auth)
        assert response.status_code == 200, f"{url}: {response.status_code}"
        sources.append((url, response.text))
    assert any("rdb24_" in text for _, text in sources), "no product metric exported"
    leaks = find_leaks(all_secrets(secure_run), sources)
    assert not leaks, "\n".join(map(str, leaks))


def test_no_secret_in_stored_results_or_dead_letters(secure_run: SecureRun) -> None:
    """Exceptions end in results (``celery-task-meta-*``) and dead letters (error + traceback).

    Every Redis key is scanned except the OAuth token store, whose job is to keep the rotated pair
    (the refresh token changes on every refresh, so it cannot live in the environment).
    """
    client = secure_run.stack.redis()
    sources = []
    for key in client.scan_iter(match="*", count=500):
        if key.startswith(TOKEN_STORE_PREFIX):
            continue
        kind = client.type(key)
        if kind == "string":
            sources.append((key, client.get(key) or ""))
        elif kind == "hash":
            sources.append((key, " ".join(f"{k}={v}" for k, v in client.hgetall(key).items())))
        elif kind == "list":
            sources.append((key, " ".join(client.lrange(key, 0, -1))))
    assert any(key.startswith("celery-task-meta-") for key, _ in sources), "no stored task results"
    leaks = find_leaks(all_secrets(secure_run), sources)
    assert not leaks, "\n".join(map(str, leaks))
