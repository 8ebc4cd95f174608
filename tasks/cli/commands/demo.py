"""``rdb24 demo``: a message round trip through a running ``rdb24 up`` stack (see ``tasks.cli.demo_flow``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from rich.progress import Progress

T = TypeVar("T")


def _wait(
    progress: Progress, label: str, items: list[T], done: Callable[[T], bool], timeout: float
) -> list[T]:
    """Advance a progress bar as items become done; returns the items that never did."""
    task = progress.add_task(label, total=len(items))
    pending = list(items)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for item in list(pending):
            if done(item):
                pending.remove(item)
                progress.advance(task)
        if pending:
            time.sleep(0.5)
    return pending


def _wait_for_stack(run_dir: Path, wait: float) -> None:
    """Wait (as ``rdb24 status --wait``) until the stack in ``run_dir`` runs and is healthy.

    ``rdb24 up`` and ``rdb24 demo`` are often started together; a stack that is still starting is
    waited for instead of being reported as missing.
    """
    from tasks.cli import stack_health
    from tasks.cli.status_report import Report, Verdict, wait_for_health

    told = False

    def look() -> Report:
        nonlocal told
        report = stack_health.look(run_dir, ping_timeout=3.0, require_stack=True)
        if report.verdict is not Verdict.HEALTHY and not told and wait > 0:
            click.echo(f"waiting up to {wait:g}s for the stack in {run_dir} to become healthy ...", err=True)
            told = True
        return report

    report = wait_for_health(look, wait)
    if report.verdict is Verdict.HEALTHY:
        return
    if [s.rows[0][1] for s in report.sections if s.key == "stack"] == ["not running"]:
        raise click.ClickException(
            f"no running stack in {run_dir} (waited {wait:g}s): start one with `make run` (rdb24 up)"
        )
    raise click.ClickException(
        f"the stack in {run_dir} is not healthy after {wait:g}s ({report.verdict.name.lower()}: "
        f"{', '.join(report.attention) or 'Redis'}); see `rdb24 status --run-dir {run_dir}`"
    )


@click.command()
@click.option("--run-dir", type=click.Path(path_type=Path), default=Path("var"), show_default=True)
@click.option("--subscribers", "count", default=3, show_default=True, help="How many subscribers write.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds each stage may take.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=180.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a stack that is still starting may take to become healthy (as `rdb24 status --wait`).",
)
def demo(run_dir: Path, count: int, timeout: float, wait: float) -> None:
    """Subscribers write (one sends a photo), operators see it in Bitrix24, an operator replies with a
    file, the subscriber gets both."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from tasks.cli.demo_flow import Demo, Subscriber, message_lines
    from tasks.cli.stack_settings import stack_settings
    from tasks.errors import DemoError
    from tasks.runtime import log

    _wait_for_stack(run_dir, wait)
    settings, state = stack_settings(run_dir)
    if state is None or not state.ready:
        raise click.ClickException(f"no running stack in {run_dir}: start one with `make run` (rdb24 up)")
    if (
        "rosdomofon" not in state.urls
        or "bitrix24" not in state.urls
        or "ROSDOMOFON_USERNAME" not in state.env
    ):
        raise click.ClickException(
            "rdb24 demo needs the RosDomofon and Bitrix24 simulators (this stack uses real ones)"
        )
    log.console("WARNING")  # the clients' request logs would drown the story; failures are still shown
    console = Console()
    flow = Demo(
        rosdomofon_url=state.urls["rosdomofon"], bitrix24_url=state.urls["bitrix24"], settings=settings
    )
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        subscribers = flow.pick_subscribers(count)
        console.print(
            f"[bold]1. {len(subscribers)} subscribers write in the RosDomofon app[/] (Kafka MESSAGES_IN)"
        )
        for index, subscriber in enumerate(subscribers, 1):
            record = flow.write(subscriber, index)
            console.print(
                f"   abonent {subscriber.abonent_id} (+{subscriber.phone}): {escape(repr(subscriber.text))} "
                f"-> {record.get('topic')}:{record.get('partition')}:{record.get('offset')}"
            )
            if subscriber.picture_url:
                console.print(f"   ... with a photo of the intercom: {escape(subscriber.picture_url)}")
        with Progress(*columns, console=console) as progress:
            cache: dict[str, tuple[float, list]] = {}

            def reached(subscriber: Subscriber) -> bool:
                # one read of the portal's chats per polling round, not one per subscriber
                if "chats" not in cache or time.monotonic() - cache["chats"][0] > 0.4:
                    cache["chats"] = (time.monotonic(), flow.chats())
                return flow.find_chat(subscriber, cache["chats"][1])

            lost = _wait(
                progress, "ingest -> lookup account -> contact -> chat", subscribers, reached, timeout
            )
        if lost:
            raise DemoError(
                f"{len(lost)} message(s) did not reach Bitrix24 within {timeout:g}s "
                "(see the worker/ingest lines of `rdb24 up`, and `rdb24 status`)"
            )
        flow.find_contacts(subscribers)
        console.print("[bold]2. What the operator sees in Bitrix24[/]")
        table = Table(show_lines=True)
        for column in ("contact", "phone", "chat", "messages in the chat"):
            table.add_column(column, overflow="fold")
        for s in subscribers:
            contact = s.contact or {}
            name = " ".join(str(contact.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
            table.add_row(
                f"#{contact.get('ID', '?')} {name}",
                f"+{s.phone}",
                str(s.chat_id),
                escape("\n".join(message_lines(m) for m in s.chat_messages[-3:])),
            )
        console.print(table)
        first = subscribers[0]
        pictures = [m for m in first.chat_messages if m.get("files") or m.get("attach")]
        if first.picture_url and not pictures:
            raise DemoError(f"subscriber {first.abonent_id}'s photo is not attached in chat {first.chat_id}")
        console.print(f"[bold]3. The operator replies in chat {first.chat_id}, with a file attached[/]")
        outcome = flow.operator_reply(first)
        console.print(
            f"   {escape(repr(first.reply))} + 📎 {escape(first.reply_file)} "
            f"-> event deliveries {escape(str(outcome.get('deliveries')))}"
        )
        with Progress(*columns, console=console) as progress:
            lost = _wait(
                progress, "webhook -> deliver reply -> RosDomofon", [first], flow.reply_arrived, timeout
            )
        if lost:
            raise DemoError(
                f"the reply did not reach abonent {first.abonent_id}'s history within {timeout:g}s"
            )
        console.print(
            f"[bold]4. In abonent {first.abonent_id}'s RosDomofon history[/] "
            f"(GET /abonents/{first.abonent_id}/messages):"
        )
        console.print(f"[green]{escape(first.reply_received)}[/]")
        console.print("[bold green]round trip complete[/]")
    except DemoError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        sys.exit(1)


def register(main: click.Group) -> None:
    main.add_command(demo)
