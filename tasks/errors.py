"""Every exception the task layer raises on purpose, in one tree.

A task's failure is handled by its ``clients.errors`` category alone (``tasks.runtime.retry_policy``),
so each class raised inside a task sits under the category that says what should happen next::

    clients.errors category       task-layer class             raised when
    RetryLaterError               (retried with backoff, MAX_RETRIES)
    ├── WaitingError              (a wait, not a failure: retried after retry_after, no budget)
    │   ├── PredecessorPendingError flows.chat                 the subscriber's earlier message is pending
    │   └── LockBusyError         state.effects.locked         another worker holds the lock (a lease)
    ├── LeaseLostError            state.effects, reconcile.lock our lease expired (we were stopped)
    ├── TaskTimeLimitError        runtime.operation            the task ran past TASK_SOFT_TIME_LIMIT
    ├── PortalReadError           reconcile.portal             a read command inside a batch failed
    └── ReplyNotYetError          flows.operator_reply         an earlier reply of the dialog is unsent
        (a RateLimitedError: a known wait, nothing was attempted)
    FixInputError                 (never retried: dead letter)
    ├── InvalidPayloadError       runtime.operation, enqueue   the payload failed validation
    ├── IncomingMessageError      flows.incoming_message       a Kafka record cannot become a chain
    ├── UnknownDialogError        state.subscribers            a chat id is not one of our dialogs
    ├── ReplyTargetError          flows.operator_reply         an operator reply cannot be addressed
    ├── OpenLinesRejectedError    flows.openlines              the portal refused the message
    └── UserFieldError            reconcile.fields             the portal refused to create a userfield
    DoNotRetryError               (never retried: a human must act)
    ├── OpenLinesSetupError       flows.openlines              the portal has no Open Line
    ├── WorkerCrashLoopError      runtime.operation            the task killed its worker N times
    └── KafkaNotConfigured        runtime.kafka_setup          Kafka settings are empty

    raised outside tasks (configuration, command line, HTTP receiver): no category needed
    SettingsError      (RuntimeError)  the environment is invalid; the worker refuses to start
    RedisUrlError      (ValueError)    REDIS_URL (+ REDIS_SENTINEL_MASTER) does not say where Redis is
    ScheduleError      (ValueError)    RECONCILE_CRONTAB is malformed; beat refuses to start
    UnknownTaskError   (KeyError)      `rdb24 tasks|enqueue NAME` names no task
    DeadLetterNotFound (KeyError)      `rdb24 dlq show|replay ID` names no dead letter
    LateReplayError    (ValueError)    `rdb24 dlq replay`: older than the markers, post unverifiable
    DemoError          (RuntimeError)  `rdb24 demo` cannot run on this stack
    BodyTooLargeError  (Exception)     the webhook body is over its limit (answered 413)
    SpoolBusyError     (OSError)       a webhook spool file is held by another live receiver

Some classes keep a builtin base beside their category (``ValueError``, ``RuntimeError``) because
callers outside the task layer catch them by it (the ingest worker dead-letters any ``ValueError``).
``tests/tasks/test_errors.py`` proves every class above the "raised outside tasks" line is classed
by the retry policy as something other than "unexpected".
"""

from __future__ import annotations

from clients.errors import DoNotRetryError, FixInputError, RateLimitedError, RetryLaterError

# --- retry later ------------------------------------------------------------------------------------


class WaitingError(RetryLaterError):
    """The task must wait (its turn), not fail: retried after ``retry_after``, outside every budget.

    The raiser bounds how long it waits (it gives up waiting and goes on); the policy never counts
    these retries, so a message that waited for its predecessor keeps its whole retry budget.
    """

    service = "tasks"


class LockBusyError(WaitingError):
    """Another worker holds the lock for longer than we may wait in one run: retry the task later.

    A wait, not a failure: every lock is a lease that a live holder releases when done and a dead one
    loses within seconds, so the wait ends; counting it would let a Redis outage (copies of one task
    queueing on its lock) spend a message's whole retry budget and dead-letter it."""

    service = "redis"


class PredecessorPendingError(WaitingError):
    """The subscriber's earlier message is not posted yet: wait, then look again (ORDER_WAIT_MAX)."""

    service = "flows"


class LeaseLostError(RetryLaterError):
    """Our lock's lease expired while we held it (process stopped, GC pause, Redis away for longer
    than the lease), so another worker may hold it now: stop before the next side effect and retry;
    the retry finds whatever the new holder did (its marker, its contact) and builds on it."""

    service = "redis"


class TaskTimeLimitError(RetryLaterError):
    """The task ran past its soft time limit (a wait that did not end): retry it from the start.

    The hard limit, just above, kills the process instead; its message is then requeued and counted
    as a worker crash (``tasks.runtime.operation``)."""

    service = "celery"


class PortalReadError(RetryLaterError):
    """A read command inside a batch failed; the message names the command and the portal's error.

    A read changes nothing, so repeating it is always harmless: the failed command is usually the
    portal's time or rate budget, and a persistent refusal ends as ``retries_exhausted`` after
    ``MAX_RETRIES``. Within a reconciliation run the re-check of ambiguous writes retries it next round.
    """

    service = "bitrix24"


class ReplyNotYetError(RateLimitedError):
    """An earlier operator reply of the same dialog is not sent yet: wait ``retry_after`` and ask again.

    Nothing was attempted, so it is retried like a rate limit (a fixed wait, its own larger budget),
    not with the backoff that transient failures share.
    """

    service = "flows"


# --- fix the input ----------------------------------------------------------------------------------


class InvalidPayloadError(FixInputError):
    """The task payload failed validation; the message names each bad field."""

    service = "tasks"


class IncomingMessageError(FixInputError, ValueError):
    """The Kafka record cannot become a chain (no sender phone, system message...): dead-letter it."""

    service = "flows"


class UnknownDialogError(FixInputError, ValueError):
    """The chat id is not one of ours (not ``abonent-<digits>``)."""

    service = "flows"


class ReplyTargetError(FixInputError):
    """The reply cannot be addressed: not our dialog, or an empty text."""

    service = "flows"


class OpenLinesRejectedError(FixInputError):
    """The portal answered but refused the message (``SUCCESS: false`` for it)."""

    service = "bitrix24"


class UserFieldError(FixInputError):
    """The portal refused to create a userfield; the message names the field and the portal's error.

    The same specs would be refused again, so the run is dead-lettered rather than retried; fix the
    spec (or the portal's rights) and replay it.
    """

    service = "bitrix24"


# --- a human must act -------------------------------------------------------------------------------


class OpenLinesSetupError(DoNotRetryError):
    """The portal has no Open Line to attach the connector to: an administrator must create one."""

    service = "bitrix24"


class WorkerCrashLoopError(DoNotRetryError):
    """The message's task killed its worker process ``MAX_WORKER_CRASHES`` times (OOM, segfault,
    ``os._exit``, the hard time limit): dead-lettered as ``worker_crashed``, not run again."""

    service = "celery"


class KafkaNotConfigured(DoNotRetryError, RuntimeError):
    """KAFKA_BOOTSTRAP_SERVERS or COMPANY_SHORT_NAME is empty."""

    service = "kafka"


# --- raised outside tasks ---------------------------------------------------------------------------


class SettingsError(RuntimeError):
    """The environment is missing or has a malformed variable; the message names each one."""


class ScheduleError(ValueError):
    """A schedule setting is malformed; the message names the variable and the value."""


class RedisUrlError(ValueError):
    """REDIS_URL (with REDIS_SENTINEL_MASTER) does not say where Redis is."""


class UnknownTaskError(KeyError):
    """No task has that name."""

    def __str__(self) -> str:
        return f"unknown task {self.args[0]!r}; `rdb24 tasks` lists them"


class DeadLetterNotFound(KeyError):
    """No dead letter has that id (already replayed or deleted)."""


class LateReplayError(ValueError):
    """The letter is older than the effect markers and its post cannot be checked: replay with --force."""


class DemoError(RuntimeError):
    """The stack cannot run the demo (not running, or not on simulators)."""


class BodyTooLargeError(Exception):
    """The request body is larger than the receiver accepts (answered 413, never read further)."""


class SpoolBusyError(OSError):
    """The webhook spool file is held (``flock``) by another live receiver: it drains it itself."""


__all__ = [
    "BodyTooLargeError",
    "DeadLetterNotFound",
    "DemoError",
    "IncomingMessageError",
    "InvalidPayloadError",
    "KafkaNotConfigured",
    "LateReplayError",
    "LeaseLostError",
    "LockBusyError",
    "OpenLinesRejectedError",
    "OpenLinesSetupError",
    "PortalReadError",
    "PredecessorPendingError",
    "RedisUrlError",
    "ReplyNotYetError",
    "ReplyTargetError",
    "ScheduleError",
    "SettingsError",
    "SpoolBusyError",
    "TaskTimeLimitError",
    "UnknownDialogError",
    "UnknownTaskError",
    "UserFieldError",
    "WaitingError",
    "WorkerCrashLoopError",
]
