"""Reconciliation benchmark: N accounts into an empty portal, then an unchanged second run.

Both simulators run in their own processes (so their CPU does not compete with the reconciler for
the GIL); the Bitrix24 simulator enforces the cloud leaky bucket (2 req/s, burst 50). For each run
it prints Bitrix24 requests (as the portal counted them), 503s, wall time, the floor for the
requests made ((requests - 50) / 2 req/s), and the floor for the minimal request count of a first
run (N/50 create batches + 1 scan). "rd s" is the RosDomofon read, "b24 phase" the rest of the run.
Targets: first run <= 1.2x the minimal floor, second run well
under a minute, zero 503s.

    .venv/bin/python bench/reconcile.py --n 10000
"""

from __future__ import annotations

import math
import multiprocessing as mp
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import click
import redis
import requests
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BURST = 50


def _serve_rosdomofon(accounts: int, seed: int, out: Any) -> None:
    from sandbox.stack.lifeline import die_with_parent

    die_with_parent()  # a forked simulator never outlives the bench
    from sandbox.rosdomofon import RosDomofonSimulator

    sim = RosDomofonSimulator(accounts=accounts, seed=seed).start()
    out.put({"url": sim.url, "username": sim.username, "password": sim.password})
    while True:
        time.sleep(3600)


def _serve_bitrix24(rate: float, out: Any) -> None:
    from sandbox.stack.lifeline import die_with_parent

    die_with_parent()  # a forked simulator never outlives the bench
    from sandbox.bitrix24.server import Bitrix24Simulator

    sim = Bitrix24Simulator(rate=rate, burst=BURST, rate_limit=True).start()
    out.put({"url": sim.url, "webhook_url": sim.webhook_url})
    while True:
        time.sleep(3600)


def _start(target: Any, *args: Any) -> tuple[mp.Process, dict[str, str]]:
    queue: Any = mp.Queue()
    process = mp.Process(target=target, args=(*args, queue), daemon=True)
    process.start()
    return process, queue.get(timeout=300)


def _portal_counts(url: str) -> tuple[int, int, int]:
    body = requests.get(f"{url}/_sandbox/calls", timeout=30).json()
    writes = sum(body["inner_counts"].get(m, 0) for m in ("crm.contact.add", "crm.contact.update"))
    return body["requests"], body["rate_limited"], writes


def _clear(store: redis.Redis) -> None:
    """Empty our claimed database but keep the claim itself (flushing it would let others take it)."""
    from sandbox.stack.redis_db import CLAIM_KEY

    for key in store.scan_iter(count=1000):
        if key != CLAIM_KEY:
            store.delete(key)


@click.command()
@click.option("--n", "accounts", default=10_000, show_default=True, help="RosDomofon accounts")
@click.option("--seed", default=7, show_default=True)
@click.option("--redis-url", default="redis://127.0.0.1:6379/0", show_default=True, help="base Redis URL")
@click.option(
    "--rate", default=2.0, show_default=True, help="portal drain, req/s (a high rate shows local overhead)"
)
@click.option("--log-level", default="WARNING", show_default=True)
def main(accounts: int, seed: int, redis_url: str, rate: float, log_level: str) -> None:

    from clients.bitrix24 import Bitrix24Config
    from clients.bitrix24.client import Bitrix24Client
    from clients.rosdomofon import RosDomofonAPI
    from sandbox.stack.redis_db import claim_database, release_database
    from tasks.reconcile.engine import reconcile
    from tasks.runtime import log
    from tasks.state.keys import BITRIX24_NAMESPACE

    log.console(log_level)
    console = Console(width=150)
    db_url = claim_database(redis_url)
    store = redis.Redis.from_url(db_url, decode_responses=True)
    _clear(store)
    rd_proc, rd = _start(_serve_rosdomofon, accounts, seed)
    b24_proc, b24 = _start(_serve_bitrix24, rate)
    try:
        api = RosDomofonAPI(rd["username"], rd["password"], base_url=rd["url"], timeout=(5.0, 60.0))
        config = Bitrix24Config(
            key_prefix=BITRIX24_NAMESPACE,
            webhook_url=SecretStr(b24["webhook_url"]),
            rate=rate,
            burst=BURST,
            limiter_key=f"bench-{uuid.uuid4().hex[:6]}",
        )
        client = Bitrix24Client(config, redis=redis.Redis.from_url(db_url))
        minimal = math.ceil(accounts / 50) + 1
        minimal_floor = max(0.0, (minimal - BURST) / rate)
        table = Table(title=f"reconcile bench: N={accounts}, Bitrix24 {rate:g} req/s burst {BURST}")
        for column in ("run", "created", "unchanged", "b24 requests", "503s", "writes", "rd requests", "rd s",
                       "b24 phase s", "wall s", "floor s", "b24 phase/floor", "wall/floor",
                       "wall/minimal floor"):  # fmt: skip
            table.add_column(column, justify="right")
        for name in ("first", "second (unchanged)"):
            before = _portal_counts(b24["url"])
            started = time.monotonic()
            report = reconcile(api, client, store).report
            wall = time.monotonic() - started
            after = _portal_counts(b24["url"])
            made, limited, writes = (a - b for a, b in zip(after, before, strict=True))
            floor = max(0.0, (made - BURST) / rate)
            table.add_row(
                name,
                str(report.created),
                str(report.unchanged),
                str(made),
                str(limited),
                str(writes),
                str(report.rosdomofon_requests),
                f"{report.rosdomofon_seconds:.1f}",
                f"{wall - report.rosdomofon_seconds:.1f}",
                f"{wall:.1f}",
                f"{floor:.1f}",
                f"{(wall - report.rosdomofon_seconds) / floor:.2f}" if floor else "-",
                f"{wall / floor:.2f}" if floor else "-",
                f"{wall / minimal_floor:.2f}" if name == "first" and minimal_floor else "-",
            )
            console.print(report.summary())
            # Let the bucket drain before the second run so it measures the run, not the first's debt.
            if name == "first":
                time.sleep(min(30.0, BURST / rate))
        console.print(table)
        console.print(
            f"minimal first-run requests: {minimal} (N/50 create batches + 1 scan) "
            f"-> floor {minimal_floor:.1f}s, "
            f"target <= {1.2 * minimal_floor:.1f}s"
        )
    finally:
        rd_proc.kill()
        b24_proc.kill()
        _clear(store)
        release_database(db_url)


if __name__ == "__main__":
    from sandbox.stack.lifeline import stop_cleanly_on

    stop_cleanly_on()  # SIGTERM/SIGHUP unwind through the finally blocks that stop the servers
    main()
