"""The ``process`` marker: a test that starts a process of its own (a Celery worker, ``rdb24 ingest``,
``rdb24 webhook``, ``rdb24 up``, a whole fault stack, a spawned client) rather than only talking to the
session's servers. ``make test-fast`` runs ``-m "not process"``: the tests that finish in seconds.

Applied here by fixture use, so a new test that asks for a worker is marked without remembering to:
any test whose fixture closure contains one of :data:`PROCESS_FIXTURES`. A module that starts processes
itself (``subprocess``, ``multiprocessing``) says so with ``pytestmark = pytest.mark.process``.

The session's shared servers (Redis, the bundled Tansu broker, the in-process simulators) do not count:
they start once per run and every fast test may use them.
"""

from __future__ import annotations

import pytest

# Fixtures that start (or hand out a starter of) processes: requesting any of them marks the test.
PROCESS_FIXTURES = frozenset(
    {
        "celery_worker_factory",  # tests/support/worker_fixtures.py: every worker fixture builds on it
        "stack_factory",  # tests/faults/conftest.py: a whole stack per scenario
        "secure_run",  # tests/security/conftest.py: one stack with every role for the package
    }
)


def needs_process(item: pytest.Item) -> bool:
    return bool(PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by ``-m``
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if needs_process(item):
            item.add_marker(pytest.mark.process)
