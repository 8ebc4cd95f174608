"""``rdb24 ingest``: run the Kafka ingest worker in the foreground."""

from __future__ import annotations

import sys

import click


@click.command()
def ingest() -> None:
    """Consume MESSAGES_IN_<company> and enqueue one chain per subscriber message (SIGTERM stops)."""
    from tasks.errors import KafkaNotConfigured, SettingsError
    from tasks.ingest import run_ingest
    from tasks.runtime import log
    from tasks.settings import get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    log.configure(settings)
    try:
        code = run_ingest(settings)
    except KafkaNotConfigured as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


def register(main: click.Group) -> None:
    main.add_command(ingest)
