"""The task catalogue is a contract with other services: they send tasks by name, to a queue, with a
JSON payload. This pins every public task's name, queue and payload JSON Schema to
``catalogue_snapshot.json``, so a renamed task, a moved queue or a changed payload fails here, with a
diff that names what changed, before a sender finds out in production.

After an intended change, regenerate the file and review its diff in the commit::

    UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/tasks/test_catalogue_snapshot.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tasks.catalogue import catalogue
from tasks.runtime.operation import REGISTRY
from tests.conftest import IN_CI
from tests.support import probe_tasks  # noqa: F401  (registered as in a full run: must not leak in)

SNAPSHOT = Path(__file__).with_name("catalogue_snapshot.json")
TEST_ONLY_PREFIX = "probe."  # tests/support/probe_tasks.py: in the same registry, never in the contract

Entries = dict[str, dict[str, Any]]


def current() -> Entries:
    """name -> queue and payload schema of every public task the code declares now."""
    return {
        item["name"]: {"queue": item["queue"], "payload_schema": item["payload_schema"]}
        for item in catalogue()
        if not item["name"].startswith(TEST_ONLY_PREFIX)
    }


def render(value: Any) -> str:
    """The snapshot's one canonical text, so a regenerated file differs only where the contract did."""
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def schema_diff(name: str, was: dict[str, Any], now: dict[str, Any]) -> str:
    lines = difflib.unified_diff(
        render(was).splitlines(), render(now).splitlines(), "snapshot", "code", lineterm="", n=2
    )
    return f"task {name!r}: payload schema changed\n" + "\n".join(f"    {line}" for line in lines)


def drift(expected: Entries, actual: Entries) -> list[str]:
    """What a sender relying on ``expected`` would trip over in ``actual``, one finding per line."""
    gone = sorted(expected.keys() - actual.keys())
    new = sorted(actual.keys() - expected.keys())
    findings = []
    for name in gone:
        twin = next((n for n in new if actual[n] == expected[name]), None)
        hint = f"renamed to {twin!r}?" if twin else "removed or renamed"
        findings.append(f"task {name!r} is gone ({hint}): senders of that name would fail")
    findings += [f"task {name!r} is new, on queue {actual[name]['queue']!r}" for name in new]
    for name in sorted(expected.keys() & actual.keys()):
        was, now = expected[name], actual[name]
        if was["queue"] != now["queue"]:
            findings.append(f"task {name!r} moved from queue {was['queue']!r} to {now['queue']!r}")
        if was["payload_schema"] != now["payload_schema"]:
            findings.append(schema_diff(name, was["payload_schema"], now["payload_schema"]))
    return findings


def test_catalogue_matches_the_snapshot() -> None:
    if os.environ.get("UPDATE_SNAPSHOT"):
        if IN_CI:
            pytest.fail("UPDATE_SNAPSHOT rewrites the contract: run it locally and commit the file")
        SNAPSHOT.write_text(render(current()), encoding="utf-8")
    expected = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    findings = drift(expected, current())
    assert not findings, (
        "the task catalogue differs from tests/tasks/catalogue_snapshot.json:\n"
        + "\n".join(findings)
        + "\nIf intended: UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/tasks/test_catalogue_snapshot.py"
    )


def test_snapshot_file_is_in_canonical_form() -> None:
    text = SNAPSHOT.read_text(encoding="utf-8")
    assert text == render(json.loads(text)), "hand-edited snapshot: regenerate it with UPDATE_SNAPSHOT=1"


def test_test_only_tasks_stay_out_of_the_contract() -> None:
    assert "probe.add" in REGISTRY
    assert not [name for name in current() if name.startswith(TEST_ONLY_PREFIX)]


# --- the failure reads well ------------------------------------------------------------------------


@pytest.fixture
def snapshot() -> Entries:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_a_renamed_task_is_named_with_its_likely_new_name(snapshot: Entries) -> None:
    code = dict(snapshot)
    code["bitrix24.create_contact_v2"] = code.pop("bitrix24.create_contact")
    assert drift(snapshot, code) == [
        "task 'bitrix24.create_contact' is gone (renamed to 'bitrix24.create_contact_v2'?): "
        "senders of that name would fail",
        "task 'bitrix24.create_contact_v2' is new, on queue 'bitrix24'",
    ]


def test_a_moved_queue_names_both_queues(snapshot: Entries) -> None:
    code = {**snapshot, "bitrix24.create_contact": {**snapshot["bitrix24.create_contact"], "queue": "flows"}}
    assert drift(snapshot, code) == ["task 'bitrix24.create_contact' moved from queue 'bitrix24' to 'flows'"]


def test_a_changed_payload_schema_shows_the_changed_lines(snapshot: Entries) -> None:
    entry = snapshot["bitrix24.add_timeline_comment"]
    schema = json.loads(json.dumps(entry["payload_schema"]))
    schema["required"] = ["contact_id"]
    (finding,) = drift(
        snapshot, {**snapshot, "bitrix24.add_timeline_comment": {**entry, "payload_schema": schema}}
    )
    assert finding.startswith("task 'bitrix24.add_timeline_comment': payload schema changed")
    assert '-  "text"' in finding and "+++ code" in finding
