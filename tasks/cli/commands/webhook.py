"""``rdb24 webhook``: the Bitrix24 event receiver (operator replies), served by uvicorn."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default=None, help="Bind address (default WEBHOOK_HOST).")
@click.option("--port", default=None, type=int, help="Port (default WEBHOOK_PORT).")
def webhook(host: str | None, port: int | None) -> None:
    """Receive ONIMCONNECTORMESSAGEADD at POST /bitrix24/events: spool each reply, then enqueue it."""
    import uvicorn

    from tasks.errors import SettingsError
    from tasks.runtime import log
    from tasks.settings import get_settings
    from tasks.webhook.receiver import app_from_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    log.configure(settings)
    if not settings.bitrix24_application_token.get_secret_value():
        click.echo("rdb24 webhook: BITRIX24_APPLICATION_TOKEN is empty; every event will get 403", err=True)
    uvicorn.run(
        app_from_settings(settings),
        host=host or settings.webhook_host,
        port=port or settings.webhook_port,
        log_config=None,  # uvicorn's records go through the standard-logging intercept into loguru
        access_log=False,
        server_header=False,
    )


def register(main: click.Group) -> None:
    main.add_command(webhook)
