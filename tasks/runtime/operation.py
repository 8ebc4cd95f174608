"""``@operation``: the one decorator every task uses (queue, payload validation, retries, dead letters,
logging context, metrics).

Contract::

    @operation("rosdomofon.block_account", queue=Queue.ROSDOMOFON, payload=BlockAccountPayload,
               result=OperationResult, retry=RetryOptions(max_retries=3))
    def block_account(payload: BlockAccountPayload) -> OperationResult: ...

- Registers a bound Celery task under that stable name on that queue, and records it in ``REGISTRY``
  (the task catalogue is built from it).
- Called as ``task.delay(**fields)`` / ``send_task(name, kwargs=fields)``, or with one positional dict
  (the previous chain step's JSON result) merged with kwargs (kwargs win). The body gets the validated
  pydantic model; its returned model is sent on as JSON.
- Errors are handled by category (``tasks.runtime.retry_policy``); what cannot succeed, or outlived its retry
  budget, is written to the dead-letter store and the task fails. ``retry`` sets this operation's
  budget (fields left ``None`` fall back to the settings); it is kept in the spec and shown by
  ``rdb24 tasks NAME``.
- No other option is accepted: a Celery task option such as ``max_retries`` or ``autoretry_for`` would
  fight the policy above, so an unknown keyword is a ``TypeError`` when the task is declared.
- When Redis (broker and dead-letter store) is unreachable, neither the retry message nor the dead
  letter can be written. Celery would then reject the message without requeue, and Redis has no
  dead-letter exchange, so it would vanish. Instead the task raises ``Reject(requeue=True)``: the
  worker puts the message back on its queue, or, when Redis is still down, the reject fails and the
  message stays in kombu's ``unacked`` hash until the restore sweep brings it back after
  ``VISIBILITY_TIMEOUT``. The re-run is safe because every side-effecting step is bracketed by
  effect markers (``tasks.state.effects``).
- Every wait has an end: past ``TASK_SOFT_TIME_LIMIT`` the body's ``SoftTimeLimitExceeded`` becomes
  a ``TaskTimeLimitError`` (retried like any transient error); past ``TASK_TIME_LIMIT`` the process is
  killed and the message requeued rather than acked (``acks_on_timeout = False``; Celery's default
  acks a timed-out late-ack message: it would be lost).
- Crash loops end: each run counts its start per task id (``tasks.state.deliveries``) and clears the
  count when it finishes; a run that finds ``MAX_WORKER_CRASHES`` unfinished starts before it (the
  task killed that many worker processes: OOM, segfault, ``os._exit``, hard time limit) writes the
  dead letter ``worker_crashed`` and fails instead of running the body again.
- ``current_attempt()`` tells the body whether this run is a retry (e.g. to look a record up before
  repeating an ambiguous write) or a replay, and which message it belongs to.
"""

from __future__ import annotations

import contextvars
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from celery import Task
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded
from kombu.exceptions import OperationalError
from loguru import logger
from pydantic import BaseModel, ValidationError

from schemas.dead_letters import DeadLetter, DeadLetterReason
from schemas.validation import format_validation_errors
from tasks.errors import InvalidPayloadError, TaskTimeLimitError, WorkerCrashLoopError
from tasks.runtime import metrics, retry_policy
from tasks.runtime.app import app
from tasks.runtime.headers import MESSAGE_HEADER, REPLAY_HEADER, RETRIES_HEADER
from tasks.runtime.queues import DECLARED, Queue
from tasks.runtime.redaction import redact, redact_text
from tasks.runtime.retry_policy import DEFAULT_OPTIONS, Cause, RetryOptions

# What "Redis/the broker is unreachable" looks like: kombu wraps publish failures in OperationalError,
# redis-py raises its own ConnectionError/TimeoutError, a refused socket may surface as OSError.
BROKER_UNREACHABLE: tuple[type[BaseException], ...] = (
    OperationalError,
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
)

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class OperationSpec:
    name: str
    queue: Queue
    payload: type[BaseModel]
    result: type[BaseModel] | None
    description: str
    retry: RetryOptions = DEFAULT_OPTIONS


REGISTRY: dict[str, OperationSpec] = {}


@dataclass(frozen=True)
class Attempt:
    """What the body may need to know about the current run."""

    task_name: str
    task_id: str
    root_id: str
    number: int  # 1 for the first run, 2 for the first retry, ...
    retries_by_cause: dict[str, int] = field(default_factory=dict)
    replay_of: str | None = None  # dead-letter id when this run is a replay
    message_id: str | None = None

    @property
    def is_retry(self) -> bool:
        return self.number > 1

    @property
    def is_replay(self) -> bool:
        return self.replay_of is not None


_attempt: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar("rdb24_attempt", default=None)


def current_attempt() -> Attempt | None:
    """The attempt being run in this context (None outside an operation task)."""
    return _attempt.get()


class OperationTask(Task):
    """Base class: nothing lost (late ack, requeue on worker loss), readable and secret-free in Flower."""

    acks_late = True
    reject_on_worker_lost = True
    # Celery acks a late-ack message whose task hit the hard time limit: it would vanish. Requeued
    # instead; its start count (never cleared, the process was killed) makes a task that always
    # hangs end as a ``worker_crashed`` dead letter.
    acks_on_timeout = False
    max_retries = None  # our policy counts retries by cause; Celery's single counter must not interfere
    typing = False


def operation(
    name: str,
    *,
    queue: Queue,
    payload: type[P],
    result: type[R] | None = None,
    retry: RetryOptions = DEFAULT_OPTIONS,
) -> Callable[[Callable[[P], Any]], Any]:
    """Declare ``fn(payload) -> result`` as the Celery task ``name`` on ``queue`` (see module doc)."""
    if not isinstance(retry, RetryOptions):
        raise TypeError(f"@operation({name!r}): retry must be a RetryOptions, got {type(retry).__name__}")

    def decorate(fn: Callable[[P], Any]) -> Any:
        summary = (fn.__doc__ or "").strip().split("\n")[0]
        spec = OperationSpec(name, queue, payload, result, summary, retry)

        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            return _execute(self, spec, fn, args, kwargs)

        run.__name__ = fn.__name__
        run.__qualname__ = fn.__qualname__
        run.__module__ = fn.__module__
        run.__doc__ = fn.__doc__
        if name in REGISTRY:
            raise ValueError(f"task name {name!r} declared twice")
        REGISTRY[name] = spec
        DECLARED[name] = queue  # the router sends every call of this name to that queue
        return app.task(name=name, bind=True, base=OperationTask)(run)

    return decorate


def merge_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """One dict from ``(previous_result,)`` and/or keyword fields; keywords win."""
    if len(args) > 1:
        raise InvalidPayloadError(f"expected at most one positional JSON object, got {len(args)} arguments")
    base: Any = args[0] if args else {}
    if base is None:
        base = {}
    if isinstance(base, BaseModel):  # a direct call with the payload model itself
        base = base.model_dump(mode="json")
    if not isinstance(base, dict):
        raise InvalidPayloadError(f"positional argument must be a JSON object, got {type(base).__name__}")
    return {**base, **kwargs}


def validate_payload(model: type[P], data: dict[str, Any], *, task_name: str | None = None) -> P:
    """The payload model, or ``InvalidPayloadError`` naming the task and each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        what = task_name or model.__name__
        raise InvalidPayloadError(f"invalid payload for {what}: {format_validation_errors(exc)}") from None


def _attempt_from(task: Task, spec: OperationSpec, payload: dict[str, Any]) -> Attempt:
    request = task.request
    counts = request.get(RETRIES_HEADER) or {}
    nested = payload.get("message")
    message_id = (
        payload.get("message_id")
        or (nested.get("message_id") if isinstance(nested, dict) else None)
        or request.get(MESSAGE_HEADER)
    )
    return Attempt(
        task_name=spec.name,
        task_id=str(request.id),
        root_id=str(request.root_id or request.id),
        number=int(request.retries or 0) + 1,
        retries_by_cause={str(k): int(v) for k, v in counts.items()},
        replay_of=request.get(REPLAY_HEADER),
        message_id=str(message_id) if message_id else None,
    )


@contextmanager
def _bound(attempt: Attempt) -> Iterator[None]:
    token = _attempt.set(attempt)
    context = {"task_name": attempt.task_name, "task_id": attempt.task_id, "root_id": attempt.root_id}
    if attempt.message_id:
        context["message_id"] = attempt.message_id
    try:
        with logger.contextualize(**context):
            yield
    finally:
        _attempt.reset(token)


def _execute(task: Task, spec: OperationSpec, fn: Callable[[Any], Any], args: tuple, kwargs: dict) -> Any:
    merge_error: InvalidPayloadError | None = None
    try:
        raw = merge_arguments(args, kwargs)
    except InvalidPayloadError as exc:
        raw, merge_error = {"args": list(args), **kwargs}, exc
    attempt = _attempt_from(task, spec, raw)
    with _bound(attempt):
        crashes = _count_start(attempt)
        try:
            result = _run(task, spec, fn, attempt, raw, merge_error, crashes)
        except Exception:  # Retry, Reject and every failure: this run ended, its process lives
            _count_finish(attempt)
            raise
        # SystemExit and the like (the pool terminating the process at the hard time limit, a
        # shutdown) leave the count: the next start sees a run that never finished.
        _count_finish(attempt)
        return result


def _run(
    task: Task,
    spec: OperationSpec,
    fn: Callable[[Any], Any],
    attempt: Attempt,
    raw: dict,
    merge_error: InvalidPayloadError | None,
    crashes: int,
) -> Any:
    from tasks.settings import get_settings

    limit = get_settings().max_worker_crashes
    if crashes >= limit:
        crash = WorkerCrashLoopError(
            f"{spec.name} killed its worker process {crashes} times (MAX_WORKER_CRASHES={limit}): "
            "OOM, segfault, os._exit or the hard time limit; not run again"
        )
        logger.error("{}", crash)
        metrics.TASKS.inc(task=spec.name, outcome="dead_letter")
        _dead_letter(task, spec, attempt, raw, crash, DeadLetterReason.WORKER_CRASHED)
        raise crash
    started = time.monotonic()
    logger.debug("attempt {} payload {}", attempt.number, redact(raw))
    try:
        if merge_error is not None:
            raise merge_error
        payload = validate_payload(spec.payload, raw, task_name=spec.name)
        output = _call_with_reauthentication(spec, fn, payload)
    except Retry:
        raise
    except SoftTimeLimitExceeded as exc:
        limited = TaskTimeLimitError(
            f"{spec.name} ran past its soft time limit ({time.monotonic() - started:.1f}s): a wait "
            "did not end; retrying"
        )
        limited.__cause__ = exc
        _handle_failure(task, spec, attempt, raw, limited)
        raise limited from exc
    except Exception as exc:
        _handle_failure(task, spec, attempt, raw, exc)
        raise
    metrics.TASKS.inc(task=spec.name, outcome="success")
    logger.info("{} done in {:.3f}s (attempt {})", spec.name, time.monotonic() - started, attempt.number)
    return _dump(spec, output)


def _count_start(attempt: Attempt) -> int:
    """Unfinished earlier starts of this task id; 0 when Redis cannot be asked (the run goes ahead)."""
    from tasks.runtime.resources import redis_client
    from tasks.state import deliveries

    try:
        return deliveries.count_start(redis_client(), attempt.task_id)
    except redis.RedisError as exc:
        logger.warning("could not count the start of {}: {}", attempt.task_id, exc)
        return 0


def _count_finish(attempt: Attempt) -> None:
    from tasks.runtime.resources import redis_client
    from tasks.state import deliveries

    try:
        deliveries.count_finish(redis_client(), attempt.task_id)
    except redis.RedisError as exc:  # the count expires; at worst one later start looks like a crash
        logger.warning("could not clear the start count of {}: {}", attempt.task_id, exc)


def broker_unreachable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an error it was raised from) means Redis could not be reached."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BROKER_UNREACHABLE):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _requeue(spec: OperationSpec, attempt: Attempt, what: str, cause: Exception) -> Reject:
    """The ``Reject`` that gives the message back to the broker instead of dropping it."""
    logger.error(
        "{} attempt {}: {} failed, Redis unreachable ({}: {}); message requeued (or restored after the "
        "visibility timeout) for redelivery",
        spec.name, attempt.number, what, type(cause).__name__, cause,
    )  # fmt: skip
    metrics.TASKS.inc(task=spec.name, outcome="requeued")
    return Reject(cause, requeue=True)


def _call_with_reauthentication(spec: OperationSpec, fn: Callable[[Any], Any], payload: BaseModel) -> Any:
    from clients.errors import ReauthenticateError

    try:
        return fn(payload)
    except ReauthenticateError as exc:
        from tasks.runtime import resources as clients

        logger.warning("{}: credentials rejected ({}); re-authenticating once", spec.name, exc)
        metrics.RETRIES.inc(task=spec.name, cause=Cause.REAUTHENTICATE.value)
        clients.reset()
        return fn(payload)


def _dump(spec: OperationSpec, output: Any) -> Any:
    if output is None:
        return None
    if spec.result is not None and not isinstance(output, BaseModel):
        output = spec.result.model_validate(output)
    if isinstance(output, BaseModel):
        return output.model_dump(mode="json")
    return output


def _handle_failure(task: Task, spec: OperationSpec, attempt: Attempt, raw: dict, exc: Exception) -> None:
    """Retry (raises ``Retry``) or write the dead letter; the caller re-raises ``exc`` after."""
    from tasks.settings import get_settings

    decision = retry_policy.decide(exc, attempt.retries_by_cause, get_settings(), spec.retry)
    if decision.retry:
        counts = dict(attempt.retries_by_cause)
        counts[decision.cause.value] = counts.get(decision.cause.value, 0) + 1
        metrics.RETRIES.inc(task=spec.name, cause=decision.cause.value)
        metrics.TASKS.inc(task=spec.name, outcome="retry")
        if decision.cause is Cause.RATE_LIMITED:
            metrics.RATE_LIMIT_WAIT.inc(decision.countdown, task=spec.name)
        log = logger.info if decision.cause is Cause.WAITING else logger.warning
        log(
            "{} attempt {} failed ({}: {}); retry in {:.2f}s",
            spec.name, attempt.number, decision.cause.value, exc, decision.countdown,
        )  # fmt: skip
        headers: dict[str, Any] = {RETRIES_HEADER: counts}
        if attempt.message_id:
            headers[MESSAGE_HEADER] = attempt.message_id
        if attempt.replay_of:
            headers[REPLAY_HEADER] = attempt.replay_of
        try:
            raise task.retry(exc=exc, countdown=decision.countdown, headers=headers, max_retries=None)
        except Reject as rejected:
            # Celery could not publish the retry and asks to drop the message (requeue=False).
            why = rejected.reason  # type: ignore[attr-defined]  # set by Reject(); the stubs omit it
            publish_error = why if isinstance(why, Exception) else None
            if publish_error is not None and broker_unreachable(publish_error):
                raise _requeue(spec, attempt, "publishing the retry", publish_error) from exc
            # Not a connection problem (e.g. the retry cannot be serialised): dead-letter, never drop.
            logger.error("{}: retry could not be published ({}); dead-lettering", spec.name, publish_error)
            metrics.TASKS.inc(task=spec.name, outcome="dead_letter")
            _dead_letter(task, spec, attempt, raw, exc, DeadLetterReason.UNEXPECTED)
            return
    if isinstance(exc, InvalidPayloadError):
        reason = DeadLetterReason.INVALID_PAYLOAD
    elif decision.exhausted:
        reason = DeadLetterReason.RETRIES_EXHAUSTED
    elif decision.cause is Cause.UNEXPECTED:
        reason = DeadLetterReason.UNEXPECTED
    else:
        reason = DeadLetterReason.NOT_RETRYABLE
    metrics.TASKS.inc(task=spec.name, outcome="dead_letter")
    _dead_letter(task, spec, attempt, raw, exc, reason)


def _dead_letter(
    task: Task, spec: OperationSpec, attempt: Attempt, raw: dict, exc: Exception, reason: DeadLetterReason
) -> None:
    from tasks.state import dead_letters

    source: dict[str, Any] = {
        "task_id": attempt.task_id,
        "root_id": attempt.root_id,
        "queue": (task.request.delivery_info or {}).get("routing_key") or spec.queue.value,
        "retries_by_cause": attempt.retries_by_cause,
    }
    if attempt.message_id:
        source["message_id"] = attempt.message_id
    if attempt.replay_of:
        source["replay_of"] = attempt.replay_of
    letter = DeadLetter(
        kind="task",
        name=spec.name,
        payload=raw,
        reason=reason.value,
        error=redact_text(f"{type(exc).__name__}: {exc}"),
        traceback=redact_text("".join(traceback.format_exception(exc))),
        attempts=attempt.number,
        source=source,
    )
    try:
        dead_letters.store().add(letter)
    except Exception as store_exc:  # the original error matters more; say loudly that it is not stored
        logger.critical(
            "could not store dead letter for {} {}: {}: {}",
            spec.name, attempt.task_id, type(store_exc).__name__, store_exc,
        )  # fmt: skip
        if broker_unreachable(store_exc):
            # Acking now would lose the message with no record of it: let it come back instead.
            raise _requeue(spec, attempt, "storing the dead letter", store_exc) from exc
        return
    if attempt.message_id:
        _settle_in_flight(attempt.message_id, raw)


def _settle_in_flight(message_id: str, raw: dict) -> None:
    """The message is accounted for in the dead-letter store: the in-flight ledger must not resend it,
    and its subscriber's later messages must not wait for it (:mod:`tasks.state.order`).

    If Redis refuses just now the entry stays, and a later resend runs the chain once more (its
    markers keep any effect single), and later messages wait at most ``ORDER_WAIT_MAX``; that is
    logged, never raised over the dead letter.
    """
    from tasks.runtime.resources import redis_client
    from tasks.state import inflight, order

    try:
        client = redis_client()
        inflight.settle(client, message_id)
        order.release(client, message_id, raw)
    except redis.RedisError as exc:
        logger.warning("dead-lettered message {} left in the in-flight ledger: {}", message_id, exc)
