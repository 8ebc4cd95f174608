"""``rdb24 status``: one readable table (or JSON document) of how the system is doing.

The exit code is the verdict, so scripts and CI can wait on it: 0 healthy, 1 attention (some
section is not healthy), 2 unreachable (Redis does not answer, or the configuration is invalid:
nothing could be checked). See ``tasks.cli.status_report`` and README "rdb24 status".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from tasks.cli.status_report import Report

UNREACHABLE = 2  # tasks.cli.status_report.Verdict.UNREACHABLE (that module is imported only when run)


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
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of the table.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Look again every second until healthy or SECONDS are up; exit with the last look's code.",
)
@click.option(
    "--probe",
    "probe_role",
    type=click.Choice(["beat", "ingest"]),
    default=None,
    help="Health probe for a container: exit 0 when the role is working, 1 otherwise.",
)
def status(run_dir: Path, timeout: float, as_json: bool, wait: float, probe_role: str | None) -> None:
    """Workers, queue depths, ingest lag, dead letters, last reconciliation, rate limiter.

    Exit code: 0 healthy, 1 attention, 2 unreachable.
    """
    from tasks.cli import stack_health, status_report
    from tasks.cli.stack_settings import stack_settings
    from tasks.errors import SettingsError

    try:
        if probe_role:
            settings, _ = stack_settings(run_dir)
            try:
                ok, why = status_report.probe(probe_role, settings)
            except Exception as exc:
                ok, why = False, f"{type(exc).__name__}: {exc}"
            click.echo(why, err=not ok)
            sys.exit(0 if ok else 1)
        report = status_report.wait_for_health(lambda: stack_health.look(run_dir, timeout), wait)
    except SettingsError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(UNREACHABLE)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        _print_table(report)
    sys.exit(int(report.verdict))


def _print_table(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    from tasks.cli.status_report import Verdict

    console = Console()
    table = Table(title=f"rosdomofon-bitrix24 status: {report.where}", show_lines=False, title_style="bold")
    table.add_column("section", style="bold cyan", no_wrap=True)
    table.add_column("item", overflow="fold")
    table.add_column("value", overflow="fold")
    table.add_column("details", overflow="fold")
    for section in report.sections:
        mark = "[green]ok[/]" if section.healthy else "[red]attention[/]"
        if section.error:
            table.add_row(section.title, "[red]unavailable[/]", "", section.error)
            continue
        for index, (item, value, note) in enumerate(section.rows):
            title = f"{section.title} {mark}" if index == 0 else ""
            table.add_row(title, item, value, note, end_section=index == len(section.rows) - 1)
    console.print(table)
    colour = {Verdict.HEALTHY: "green", Verdict.ATTENTION: "yellow", Verdict.UNREACHABLE: "red"}
    verdict = report.verdict
    why = f": {', '.join(report.attention)}" if verdict is Verdict.ATTENTION else ""
    console.print(f"[bold {colour[verdict]}]{verdict.name.lower()}[/]{why} (exit {int(verdict)})")


def register(main: click.Group) -> None:
    main.add_command(status)
