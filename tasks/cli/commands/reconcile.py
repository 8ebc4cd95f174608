"""``rdb24 reconcile [--dry-run] [--full] [--inline] [--wait S]``: run or preview a reconciliation.

``--dry-run`` reads both sides and prints what would be created, updated and adopted, writing
nothing (it runs here, not on a worker). Without it the run is enqueued as ``reconcile.run`` on the
``reconcile`` queue (so it still honours the run lock and the worker's clients) and, with ``--wait``,
its report is printed; ``--inline`` runs it in this process instead.
"""

from __future__ import annotations

import json

import click


def _print_plan(outcome: object, limit: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from tasks.reconcile.engine import Outcome

    assert isinstance(outcome, Outcome)
    console = Console()
    table = Table(title="reconciliation plan (dry run: nothing written)")
    for column in ("action", "account", "contact", "fields"):
        table.add_column(column, overflow="fold")
    for write in outcome.plan.writes[:limit]:
        table.add_row(
            write.kind.value, str(write.account_id), str(write.contact_id or "new"), ", ".join(write.changed)
        )
    console.print(table)
    if len(outcome.plan.writes) > limit:
        console.print(f"... and {len(outcome.plan.writes) - limit} more (use --limit)")
    counts = outcome.plan.counts()
    console.print(
        f"would create {counts['create']}, update {counts['update']}, adopt {counts['adopt']}; "
        f"unchanged {outcome.report.unchanged} of {outcome.report.accounts} accounts"
    )


def _print_report(report: dict) -> None:
    click.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))


@click.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Print the plan (creates, updates, adoptions); write nothing.")
@click.option("--full", is_flag=True, help="Ignore fingerprints: re-check every account against Bitrix24.")
@click.option("--inline", is_flag=True, help="Run in this process instead of enqueueing it for a worker.")
@click.option(
    "--wait", type=float, default=None, help="After enqueueing, wait this many seconds for the report."
)
@click.option("--limit", type=int, default=50, show_default=True, help="Plan rows to print in a dry run.")
def reconcile_command(dry_run: bool, full: bool, inline: bool, wait: float | None, limit: int) -> None:
    """Reconcile RosDomofon accounts and connections into Bitrix24 contacts."""
    from tasks.errors import SettingsError
    from tasks.settings import get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run or inline:
        from tasks.reconcile.run import run_reconciliation
        from tasks.runtime import resources as clients

        outcome = run_reconciliation(
            clients.rosdomofon_api(),
            clients.bitrix24_client(),
            clients.redis_client(),
            full=full,
            dry_run=dry_run,
            lock_ttl=settings.reconcile_lock_ttl,
            read_concurrency=settings.reconcile_read_concurrency,
        )
        if dry_run:
            _print_plan(outcome, limit)
        else:
            _print_report(outcome.report.model_dump(mode="json"))
        if outcome.report.status.value in ("failed", "skipped"):
            raise SystemExit(1)
        return
    from tasks.reconcile.run import run as reconcile_task

    result = reconcile_task.apply_async(kwargs={"full": full})
    click.echo(f"enqueued reconcile.run {result.id}")
    if wait is not None:
        _print_report(result.get(timeout=wait, propagate=True))


def register(main: click.Group) -> None:
    main.add_command(reconcile_command)
