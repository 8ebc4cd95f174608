"""Every Redis key string the system writes, pinned: deployed data and operators' scripts read them.

A rename here is a data migration, not a refactor: if one of these tests fails, either put the string
back or write the migration and change the table on purpose.
"""

from __future__ import annotations

import ast
import fnmatch
import time
import uuid
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from clients.bitrix24 import Bitrix24Client
from clients.bitrix24.redis_keys import RedisKeys
from sandbox.stack import wiring
from tasks.runtime import resources, schedule
from tasks.settings import Settings
from tasks.state import keys

ROOT = Path(__file__).resolve().parents[2]

PINNED = {
    "DONE_PREFIX": "rdb24:done",
    "LOCK_PREFIX": "rdb24:lock",
    "INFLIGHT_LEDGER": "rdb24:inflight",
    "INFLIGHT_MESSAGES": "rdb24:inflight:messages",
    "DLQ_ITEMS": "rdb24:dlq:items",
    "DLQ_INDEX": "rdb24:dlq:index",
    "ACCOUNTS_BY_PHONE": "rdb24:accounts:by_phone",
    "ACCOUNTS_REFRESHED_AT": "rdb24:accounts:refreshed_at",
    "SUBSCRIBER_PREFIX": "rdb24:subscriber",
    "CONTACT_BY_PHONE_PREFIX": "rdb24:contact:phone",
    "CRM_CHAT_PREFIX": "rdb24:crmchat:contact",
    "OUTBOX_ITEMS": "rdb24:outbox:items",
    "OUTBOX_SUBSCRIBER_PREFIX": "rdb24:outbox:subscriber",
    "OUTBOX_READY": "rdb24:outbox:ready",
    "OUTBOX_SEQ": "rdb24:outbox:seq",
    "OUTBOX_KICK": "rdb24:outbox:kick",
    "CONTACT_PENDING": "rdb24:contact:pending",
    "OPENLINES_READY_PREFIX": "rdb24:openlines:ready",
    "OPENLINES_LINE": "rdb24:openlines:line",
    "REPLY_ENQUEUED_PREFIX": "rdb24:reply:enqueued",
    "INGEST_STATUS_PREFIX": "rdb24:ingest:status:",
    "RECONCILE_RUN_LOCK": "rdb24:lock:reconcile",
    "RECONCILE_LAST_REPORT": "rdb24:reconcile:last_report",
    "RECONCILE_REPORTS": "rdb24:reconcile:reports",
    "RECONCILE_FINGERPRINTS": "rdb24:reconcile:fingerprints",
    "RECONCILE_USERFIELDS": "rdb24:reconcile:userfields",
    "METRICS_PREFIX": "rdb24:metrics:",
    "REDBEAT_PREFIX": "rdb24:redbeat:",
    "REDBEAT_LOCK": "rdb24:redbeat::lock",
    "REDBEAT_LOCK_PATTERN": "*redbeat::lock",
    "BITRIX24_NAMESPACE": "rdb24:b24",
    "BITRIX24_BUCKET_PREFIX": "rdb24:b24:bucket:",
    "BITRIX24_BUCKET_PATTERN": "rdb24:b24:bucket:*",
}

# What the Bitrix24 client derives under the namespace the task layer passes in (part -> key).
PINNED_BITRIX24 = {
    "bucket": "rdb24:b24:bucket:portal.example",
    "operating": "rdb24:b24:operating:portal.example",
    "oauth_token": "rdb24:b24:oauth:portal.example:app.1",
    "oauth_refresh_lock": "rdb24:b24:oauth-refresh:app.1",
    "contact_create_lock": "rdb24:b24:contact-create:79001234567",
}


def test_every_task_layer_key_is_pinned() -> None:
    declared = {name: getattr(keys, name) for name in keys.__all__}
    assert declared == PINNED
    public = {name for name in vars(keys) if name.isupper()}
    assert public == set(keys.__all__), "a key declared but not exported (or the reverse)"


def test_bitrix24_client_keys_under_the_task_namespace() -> None:
    layout = RedisKeys(keys.BITRIX24_NAMESPACE)
    derived = {
        "bucket": layout.bucket("portal.example"),
        "operating": layout.operating("portal.example"),
        "oauth_token": layout.oauth_token("portal.example", "app.1"),
        "oauth_refresh_lock": layout.oauth_refresh_lock("app.1"),
        "contact_create_lock": layout.contact_create_lock("79001234567"),
    }
    assert derived == PINNED_BITRIX24
    # rdb24 status reads the buckets the client writes
    assert layout.bucket("portal.example").removeprefix(keys.BITRIX24_BUCKET_PREFIX) == "portal.example"
    assert fnmatch.fnmatchcase(layout.bucket("portal.example"), keys.BITRIX24_BUCKET_PATTERN)


def test_beat_is_configured_with_the_pinned_prefix_and_its_lock_is_found() -> None:
    settings = Settings(REDIS_URL="redis://127.0.0.1:6379/0")
    assert schedule.beat_defaults(settings)["redbeat_key_prefix"] == "rdb24:redbeat:"
    assert schedule.redbeat_lock_key() == "rdb24:redbeat::lock"
    assert fnmatch.fnmatchcase(schedule.redbeat_lock_key(), keys.REDBEAT_LOCK_PATTERN)


def test_sandbox_copies_match_the_task_layer() -> None:
    """The simulators may not import tasks, so ``sandbox.stack.wiring`` keeps copies for its health probes."""
    assert wiring.INGEST_STATUS_PREFIX == keys.INGEST_STATUS_PREFIX
    assert wiring.REDBEAT_LOCK_PATTERN == keys.REDBEAT_LOCK_PATTERN


def _rdb24_literals(path: Path) -> list[tuple[int, str]]:
    """Key-like literals (and f-string parts): ``rdb24:`` not followed by a space (``"rdb24: <error>"``
    is a message). Docstrings are left out: they may name the keys they document."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("rdb24:")
        and not node.value.startswith("rdb24: ")
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize("package", ["tasks", "clients"])
def test_no_key_is_spelled_outside_the_keys_module(package: str) -> None:
    declared = {("tasks/state/keys.py", value) for value in PINNED.values()}
    tag = ("tasks/flows/chat.py", "rdb24:")  # the tag hidden in CRM chat text, not a Redis key
    allowed = declared | {tag}
    spelled = [
        (str(path.relative_to(ROOT)), line, value)
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, value in _rdb24_literals(path)
        if (str(path.relative_to(ROOT)), value) not in allowed
    ]
    assert spelled == [], "declare the key in tasks/state/keys.py (clients: take it from the caller)"


def test_the_deployed_client_writes_the_pinned_keys(redis_url: str) -> None:
    """``tasks.runtime.resources`` hands the client the namespace; its shared state lands where the
    deployed Redis data already is."""
    host, app = f"portal-{uuid.uuid4().hex[:8]}.example", f"app.{uuid.uuid4().hex[:6]}"
    settings = Settings(
        REDIS_URL=redis_url,
        BITRIX24_WEBHOOK_URL=SecretStr(""),
        BITRIX24_CLIENT_ENDPOINT=f"https://{host}/rest/",
        BITRIX24_CLIENT_ID=app,
        BITRIX24_CLIENT_SECRET=SecretStr("secret"),
        BITRIX24_ACCESS_TOKEN=SecretStr("access"),
        BITRIX24_REFRESH_TOKEN=SecretStr("refresh"),
    )
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    client = Bitrix24Client(resources.bitrix24_config(settings), redis=redis.Redis.from_url(redis_url))
    try:
        client.limiter.reserve()  # type: ignore[attr-defined]
        client.operating.record("crm.contact.list", 1.5, time.time() + 600)
        client.operating.park("crm.contact.add", time.time() + 30)
        written = sorted(store.scan_iter(match=f"*{host}*"))
        assert written == [
            f"rdb24:b24:bucket:{host}",
            f"rdb24:b24:oauth:{host}:{app}",
            f"rdb24:b24:operating:{host}:parked:crm.contact.add",
            f"rdb24:b24:operating:{host}:used",
        ]
        assert '"refresh_token":"refresh"' in (store.get(f"rdb24:b24:oauth:{host}:{app}") or "")
    finally:
        client.close()
        for key in store.scan_iter(match=f"*{host}*"):
            store.delete(key)
