"""``rdb24 status``: one readable table of how the system is doing (see ``tasks.cli.status_report``)."""

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
    help="Where `rdb24 up` keeps its state file (used when a local stack runs).",
)
@click.option(
    "--timeout", type=float, default=1.0, show_default=True, help="Seconds to wait for worker pings."
)
@click.option(
    "--probe",
    "probe_role",
    type=click.Choice(["beat", "ingest"]),
    default=None,
    help="Health probe for a container: exit 0 when the role is working, 1 otherwise.",
)
def status(run_dir: Path, timeout: float, probe_role: str | None) -> None:
    """Workers, queue depths, ingest lag, dead letters, last reconciliation, rate limiter."""
    from rich.console import Console
    from rich.table import Table

    from tasks.cli import status_report
    from tasks.cli.stack_settings import stack_settings
    from tasks.errors import SettingsError

    try:
        settings, state = stack_settings(run_dir)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if probe_role:
        try:
            ok, why = status_report.probe(probe_role, settings)
        except Exception as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        click.echo(why, err=not ok)
        sys.exit(0 if ok else 1)

    console = Console()
    where = f"local stack (pid {state.pid}, {state.run_dir})" if state else "configured environment"
    table = Table(title=f"rosdomofon-bitrix24 status: {where}", show_lines=False, title_style="bold")
    table.add_column("section", style="bold cyan", no_wrap=True)
    table.add_column("item", overflow="fold")
    table.add_column("value", overflow="fold")
    table.add_column("details", overflow="fold")
    for section in status_report.collect_status(settings, ping_timeout=timeout):
        mark = "[green]ok[/]" if section.healthy else "[red]attention[/]"
        if section.error:
            table.add_row(section.title, "[red]unavailable[/]", "", section.error)
            continue
        for index, (item, value, note) in enumerate(section.rows):
            title = f"{section.title} {mark}" if index == 0 else ""
            table.add_row(title, item, value, note, end_section=index == len(section.rows) - 1)
    console.print(table)


def register(main: click.Group) -> None:
    main.add_command(status)
