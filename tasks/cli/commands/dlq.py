"""``rdb24 dlq list|show|replay|delete``: the dead-letter store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from tasks.state.dead_letters import DeadLetterStore


def _store() -> DeadLetterStore:
    from tasks.state.dead_letters import store

    return store()


@click.group("dlq")
def dlq() -> None:
    """Dead letters: tasks and records that could not be processed."""


@dlq.command("list")
@click.option("--limit", default=50, show_default=True)
@click.option("--name", default=None, help="Only this task name (or Kafka topic).")
@click.option("--json", "as_json", is_flag=True)
def list_command(limit: int, name: str | None, as_json: bool) -> None:
    """Newest first: id, kind, name, reason, attempts, error."""
    store = _store()
    letters = store.list(limit=limit, name=name)
    if as_json:
        click.echo(json.dumps([letter.model_dump(mode="json") for letter in letters], indent=2))
        return
    click.echo(f"{store.count()} dead letter(s)")
    for letter in letters:
        click.echo(
            f"{letter.id}  {letter.created_at:%Y-%m-%d %H:%M:%S}  {letter.kind}  {letter.name}  "
            f"{letter.reason}  attempts={letter.attempts}  {letter.error[:120]}"
        )


@dlq.command("show")
@click.argument("letter_id")
def show_command(letter_id: str) -> None:
    """One dead letter in full (payload, error, traceback, source)."""
    from tasks.errors import DeadLetterNotFound

    try:
        letter = _store().get(letter_id)
    except DeadLetterNotFound:
        raise click.ClickException(f"no dead letter {letter_id}") from None
    click.echo(json.dumps(letter.model_dump(mode="json"), indent=2, ensure_ascii=False))


@dlq.command("replay")
@click.argument("letter_id", required=False)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--name", default=None, help="With --all: only this task name.")
@click.option(
    "--force",
    is_flag=True,
    help="Also replay letters older than EFFECT_MARKER_TTL whose earlier post cannot be checked.",
)
def replay_command(letter_id: str | None, replay_all: bool, name: str | None, force: bool) -> None:
    """Re-enqueue with the original payload (a new attempt); prints 'dead letter id -> new task id'."""
    from tasks import replay
    from tasks.errors import DeadLetterNotFound, LateReplayError

    if bool(letter_id) == replay_all:
        raise click.UsageError("give one dead letter ID, or --all")
    store = _store()
    refused: dict[str, str] = {}
    if not letter_id:  # so --all, checked above
        replayed = replay.replay_all(store, name=name, force=force, refused=refused)
    else:
        try:
            replayed = {letter_id: replay.replay(store, letter_id, force=force)}
        except DeadLetterNotFound:
            raise click.ClickException(f"no dead letter {letter_id}") from None
        except LateReplayError as exc:
            raise click.ClickException(str(exc)) from None
    for old, new in replayed.items():
        click.echo(f"{old} -> {new}")
    for old, why in refused.items():
        click.echo(f"{old} not replayed: {why}", err=True)


@dlq.command("delete")
@click.argument("letter_id")
def delete_command(letter_id: str) -> None:
    """Drop a dead letter for good."""
    if not _store().delete(letter_id):
        raise click.ClickException(f"no dead letter {letter_id}")
    click.echo(f"deleted {letter_id}")


def register(main: click.Group) -> None:
    main.add_command(dlq)
