"""``rdb24 up``: the whole stack in the foreground, with a stand-in for whatever is not configured.

How each outside dependency is decided (``sandbox.stack.plan.resolve_sources``):

* Redis: ``REDIS_URL`` set in the environment or ``.env`` -> used as it is (it must answer); unset ->
  the default local Redis if it answers (with a database index claimed for this stack), else a
  bundled Valkey.
* Kafka: ``KAFKA_BOOTSTRAP_SERVERS`` set -> used; else a bundled Tansu broker with the topics created.
* RosDomofon: ``ROSDOMOFON_USERNAME`` set -> the real API; else the simulator, seeded with demo
  accounts, its subscriber side on the Kafka broker in use.
* Bitrix24: ``BITRIX24_WEBHOOK_URL`` or ``BITRIX24_CLIENT_ID``/``SECRET`` set -> the real portal; else the
  simulator, whose operator replies reach our webhook receiver.

``--embedded`` ignores the configuration and uses a stand-in for everything (tests, demos on a
machine with a real .env); ``--free-ports`` never uses the fixed default ports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    default=Path("var"),
    show_default=True,
    help="Where the state file, generated Procfile and stand-in logs go.",
)
@click.option(
    "--embedded",
    "force_embedded",
    is_flag=True,
    help="A stand-in for every outside service, whatever is configured.",
)
@click.option("--free-ports", is_flag=True, help="Pick free ports instead of the fixed defaults.")
@click.option("--accounts", default=20, show_default=True, help="Demo accounts in the RosDomofon simulator.")
@click.option("--seed", default=42, show_default=True, help="Seed of the simulator's demo data.")
@click.option(
    "--health-timeout", default=180.0, show_default=True, help="Seconds every service gets to become healthy."
)
def up(
    run_dir: Path, force_embedded: bool, free_ports: bool, accounts: int, seed: int, health_timeout: float
) -> None:
    """Run the whole stack in the foreground; Ctrl-C stops everything."""
    from rich.console import Console

    from sandbox.stack.plan import StackInputs, make_plan
    from sandbox.stack.redis_db import redis_answers
    from sandbox.stack.runner import StackError, StackRunner
    from tasks.errors import SettingsError
    from tasks.settings import load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    redis_explicit = "redis_url" in settings.model_fields_set
    answers = not force_embedded and redis_answers(settings.redis_url)
    if redis_explicit and not force_embedded and not answers:
        raise click.ClickException(
            f"REDIS_URL is set but {settings.redis_url.split('@')[-1]} does not answer; "
            "start it, or unset REDIS_URL to get a bundled Valkey"
        )
    inputs = StackInputs(
        redis_url=settings.redis_url,
        redis_explicit=redis_explicit,
        redis_answers=answers,
        kafka_bootstrap=settings.kafka_bootstrap_servers,
        rosdomofon_configured=bool(settings.rosdomofon_username),
        bitrix24_configured=bool(settings.bitrix24_webhook_url.get_secret_value())
        or settings.bitrix24_oauth_configured,
        company=settings.company_short_name,
        flower_user=settings.flower_user,
        flower_password_set=bool(settings.flower_password.get_secret_value()),
        force_embedded=force_embedded,
        free_ports=free_ports,
    )
    plan = make_plan(inputs, accounts=accounts, seed=seed)
    console = Console()
    if not console.is_terminal:  # piped or logged: keep URLs and credentials on one line each
        console = Console(width=160)
    sources = ", ".join(f"{name}: {source}" for name, source in plan.sources.items())
    console.print(f"[bold]rdb24 up[/] — {sources}")
    runner = StackRunner(
        plan=plan,
        run_dir=run_dir,
        redis_url=settings.redis_url,
        console=console,
        health_timeout=health_timeout,
    )
    try:
        code = runner.run()
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


def register(main: click.Group) -> None:
    main.add_command(up)
