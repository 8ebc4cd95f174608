"""``rdb24 tasks`` (the catalogue with payload JSON Schemas) and ``rdb24 enqueue NAME JSON``."""

from __future__ import annotations

import json
from typing import Any

import click


@click.command("tasks")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
def tasks_command(name: str | None, as_json: bool) -> None:
    """Every public task name with its retry options and the JSON Schema of its payload (or one task's)."""
    from tasks.catalogue import catalogue, describe, spec
    from tasks.errors import UnknownTaskError

    try:
        items = [describe(spec(name))] if name else catalogue()
    except UnknownTaskError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(items, indent=2, ensure_ascii=False))
        return
    for item in items:
        click.echo(f"{item['name']}  [queue: {item['queue']}]  {item['description']}")
        click.echo(f"  retry: {_retry_line(item['retry'])}")
        click.echo(json.dumps(item["payload_schema"], indent=2, ensure_ascii=False))
        click.echo()


def _retry_line(declared: dict[str, Any]) -> str:
    """``max_retries=3, backoff_max=RETRY_BACKOFF_MAX, ...``: the declared value, else its setting."""
    from tasks.runtime.retry_policy import SETTING_OF

    return ", ".join(
        f"{name}={SETTING_OF[name] if value is None else f'{value:g}'}" for name, value in declared.items()
    )


@click.command("enqueue")
@click.argument("name")
@click.argument("payload", default="{}")
@click.option("--task-id", default=None, help="Use this task id (idempotent enqueue).")
@click.option("--wait", type=float, default=None, help="Wait this many seconds for the result and print it.")
def enqueue_command(name: str, payload: str, task_id: str | None, wait: float | None) -> None:
    """Validate PAYLOAD (a JSON object) against NAME's schema and enqueue it; prints the task id."""
    from tasks.enqueue import enqueue
    from tasks.errors import InvalidPayloadError, UnknownTaskError

    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"payload is not valid JSON: {exc}") from None
    try:
        new_id = enqueue(name, data, task_id=task_id)
    except (UnknownTaskError, InvalidPayloadError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(new_id)
    if wait is not None:
        from celery.result import AsyncResult

        from tasks.runtime.app import app

        result: object = AsyncResult(new_id, app=app).get(timeout=wait, propagate=False)  # any JSON
        click.echo(json.dumps(result, ensure_ascii=False, default=str))


def register(main: click.Group) -> None:
    main.add_command(tasks_command)
    main.add_command(enqueue_command)
