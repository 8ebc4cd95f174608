"""Fixtures of the fault scenarios (their summary table: ``tests/support/parallel_run.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Stack, StackOptions

StackFactory = Callable[..., Stack]


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[StackFactory]:
    """Start whole stacks (``stack_factory(StackOptions(...))``); every one is torn down at the end."""
    stacks: list[Stack] = []

    def start(options: StackOptions | None = None) -> Stack:
        stack = Stack(tmp_path / f"stack{len(stacks)}", options)
        stacks.append(stack)
        return stack.start()

    yield start
    for stack in stacks:
        stack.close()
