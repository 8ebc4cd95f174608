"""Bulk create and read back N contacts through the simulated portal with its rate limit ON.

Writes go as ``batch`` requests of 50 ``crm.contact.add``; reads go back twice: ``batch`` of 50
``crm.contact.get`` and the ID-window scan of ``crm.contact.list`` (``start=-1``). The client's
leaky bucket (Redis when ``--redis-url`` is given, else in-process) must keep the portal from ever
answering 503 while staying close to the floor: (requests - burst) / rate seconds.

    .venv/bin/python bench/bitrix24_bulk.py --n 1000
"""

from __future__ import annotations

import time

import click
import redis
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from clients.bitrix24 import Bitrix24Client, Bitrix24Config
from sandbox.bitrix24 import Bitrix24Simulator
from tasks.runtime import log
from tasks.state.keys import BITRIX24_NAMESPACE


@click.command()
@click.option("--n", default=1000, show_default=True, help="Contacts to create and read back.")
@click.option("--rate", default=2.0, show_default=True, help="Portal drain rate, requests/s.")
@click.option("--burst", default=50, show_default=True, help="Portal bucket size.")
@click.option("--redis-url", default=None, help="Share the limiter through Redis (else in-process).")
def main(n: int, rate: float, burst: int, redis_url: str | None) -> None:
    log.console("WARNING")  # per-call DEBUG lines would distort the timing
    sim = Bitrix24Simulator(rate=rate, burst=burst, rate_limit=True).start()
    config = Bitrix24Config(
        key_prefix=BITRIX24_NAMESPACE,
        webhook_url=SecretStr(sim.webhook_url),
        rate=rate,
        burst=burst,
        limiter_key=f"bench-{time.time()}",
    )
    client = Bitrix24Client(
        config, redis=redis.Redis.from_url(redis_url) if redis_url else None, rate_limit_retries=3
    )
    rows = []
    try:
        start = time.monotonic()
        outcome = client.batch(
            {
                f"c{i}": (
                    "crm.contact.add",
                    {"fields": {"NAME": f"Bench {i}", "PHONE": [{"VALUE": f"79{i:09d}"}]}},
                )
                for i in range(n)
            }
        )
        ids = [int(outcome.results[f"c{i}"]) for i in range(n)]
        rows.append(("create (batch 50)", client.stats.requests, time.monotonic() - start))
        mark, before = time.monotonic(), client.stats.requests
        contacts = client.get_contacts(ids)
        rows.append(("read back (batch get)", client.stats.requests - before, time.monotonic() - mark))
        mark, before = time.monotonic(), client.stats.requests
        scanned = list(client.scan_by_id("crm.contact.list", select=["ID", "NAME", "PHONE"]))
        rows.append(("read back (ID scan)", client.stats.requests - before, time.monotonic() - mark))
        wall = time.monotonic() - start
        assert len(contacts) == n and len(scanned) == n and not outcome.errors
    finally:
        summary = sim.portal.summary()
        client.close()
        sim.stop()

    requests_made = summary["requests"]
    floor = max(0.0, (requests_made - burst) / rate)
    table = Table(title=f"Bitrix24 bulk: {n} contacts, portal {rate:g} req/s burst {burst}")
    for column in ("phase", "requests", "seconds"):
        table.add_column(column, justify="right" if column != "phase" else "left")
    for phase, count, seconds in rows:
        table.add_row(phase, str(count), f"{seconds:.2f}")
    table.add_section()
    table.add_row("requests made (portal count)", str(requests_made), "")
    table.add_row("503 QUERY_LIMIT_EXCEEDED", str(summary["rate_limited"]), "")
    table.add_row("wall time", "", f"{wall:.2f}")
    table.add_row("floor (requests - burst) / rate", "", f"{floor:.2f}")
    table.add_row("wall / floor", "", f"{wall / floor:.2f}" if floor else "n/a")
    Console().print(table)


if __name__ == "__main__":
    from sandbox.stack.lifeline import stop_cleanly_on

    stop_cleanly_on()  # SIGTERM/SIGHUP unwind through the finally blocks that stop the servers
    main()
