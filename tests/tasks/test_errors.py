"""``tasks.errors`` is the one home of the task layer's exceptions, and the retry policy knows each one."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import tasks
from clients.errors import DoNotRetryError, FixInputError, IntegrationError, RetryLaterError
from tasks import errors
from tasks.runtime.retry_policy import Cause, classify

# Raised by configuration, the command line or the HTTP receiver, never inside a task: they need no
# retry category. Keep this list short; anything a task body may raise belongs under a category.
RAISED_OUTSIDE_TASKS = {
    errors.SettingsError,
    errors.RedisUrlError,
    errors.ScheduleError,
    errors.UnknownTaskError,
    errors.DeadLetterNotFound,
    errors.LateReplayError,
    errors.DemoError,
    errors.BodyTooLargeError,
    errors.SpoolBusyError,
}


def defined_exceptions() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == errors.__name__
    ]


TASK_ERRORS = [cls for cls in defined_exceptions() if cls not in RAISED_OUTSIDE_TASKS]


@pytest.mark.parametrize("cls", TASK_ERRORS, ids=lambda cls: cls.__name__)
def test_every_task_error_has_a_retry_category(cls: type[Exception]) -> None:
    assert issubclass(cls, IntegrationError)
    assert classify(cls("x")) is not Cause.UNEXPECTED


def test_the_allow_list_names_only_classes_of_the_module() -> None:
    assert set(defined_exceptions()) >= RAISED_OUTSIDE_TASKS
    assert set(errors.__all__) == {cls.__name__ for cls in defined_exceptions()}


@pytest.mark.parametrize(
    ("cls", "category", "cause"),
    [
        (errors.PortalReadError, RetryLaterError, Cause.TRANSIENT),  # a read is harmless to repeat
        (errors.LockBusyError, RetryLaterError, Cause.WAITING),
        (errors.ReplyNotYetError, RetryLaterError, Cause.RATE_LIMITED),  # a fixed wait, its own budget
        (errors.UserFieldError, FixInputError, Cause.INVALID_INPUT),  # the same spec is refused again
        (errors.InvalidPayloadError, FixInputError, Cause.INVALID_INPUT),
        (errors.OpenLinesSetupError, DoNotRetryError, Cause.REFUSED),
        (errors.KafkaNotConfigured, DoNotRetryError, Cause.REFUSED),
    ],
)
def test_categories_say_what_the_caller_should_do(
    cls: type[Exception], category: type[Exception], cause: Cause
) -> None:
    assert issubclass(cls, category)
    assert classify(cls("x")) is cause


def test_builtin_bases_callers_catch_by_are_kept() -> None:
    # The ingest worker dead-letters any ValueError; the ingest dead-letter path waits on RuntimeError.
    assert issubclass(errors.IncomingMessageError, ValueError)
    assert issubclass(errors.UnknownDialogError, ValueError)
    assert issubclass(errors.KafkaNotConfigured, RuntimeError)
    assert str(errors.UnknownTaskError("nope")) == "unknown task 'nope'; `rdb24 tasks` lists them"


def test_no_other_task_module_defines_an_exception() -> None:
    """One tree: a new exception class elsewhere under tasks/ would escape the category check above."""
    root = Path(tasks.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "errors.py" and path.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
                if any(b.endswith(("Error", "Exception", "NotFound", "NotConfigured")) for b in bases):
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    assert found == []
