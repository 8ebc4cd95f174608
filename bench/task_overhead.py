"""Throughput of the task layer itself: N no-op ``@operation`` tasks through a real worker and Redis.

Measures enqueue rate and end-to-end completion rate for a threads worker and a prefork worker,
at INFO and DEBUG log levels, so the cost of the base task (validation, logging context, metrics)
and of logging is visible. Uses a Redis DB you name, which must be empty; it is claimed for the run
(test sessions skip claimed DBs) and emptied afterwards.

    .venv/bin/python bench/task_overhead.py --redis-url redis://127.0.0.1:6379/13 --n 500
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import click
import redis
from rich.console import Console
from rich.table import Table

CLAIM_KEY = "rdb24:test-session-claim"  # the key tests/conftest.py uses to own a database
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.celery_worker import FAST_RETRY_ENV, CeleryWorker, point_app_at  # noqa: E402


def run_once(url: str, n: int, pool: str, concurrency: int, level: str, log_dir: Path) -> tuple[float, float]:
    app = point_app_at(url)
    env = {**os.environ, **FAST_RETRY_ENV, "REDIS_URL": url, "PYTHONPATH": str(ROOT), "LOG_LEVEL": level}
    log = log_dir / f"{pool}-{level}.log"
    worker = CeleryWorker(
        app, env, log, pool=pool, concurrency=concurrency, include=("tests.support.probe_tasks",)
    ).start()
    try:
        started = time.monotonic()
        results = [app.send_task("probe.add", kwargs={"x": i, "y": 1}) for i in range(n)]
        sent = time.monotonic() - started
        for result in results:
            result.get(timeout=600)
        return n / sent, n / (time.monotonic() - started)
    finally:
        worker.stop()


@click.command()
@click.option("--redis-url", default="redis://127.0.0.1:6379/13", show_default=True)
@click.option("--n", default=500, show_default=True, help="Tasks per run.")
@click.option("--concurrency", default=4, show_default=True)
def main(redis_url: str, n: int, concurrency: int) -> None:
    client = redis.Redis.from_url(redis_url)
    if client.dbsize():
        raise click.ClickException(f"{redis_url} is not empty: name a free database")
    table = Table(title=f"{n} no-op @operation tasks, concurrency {concurrency}")
    for column in ("pool", "log level", "enqueue/s", "completed/s"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for pool in ("threads", "prefork"):
            for level in ("INFO", "DEBUG"):
                client.flushdb()
                client.set(CLAIM_KEY, "bench/task_overhead.py", ex=3600)
                enqueue_rate, done_rate = run_once(redis_url, n, pool, concurrency, level, Path(tmp))
                table.add_row(pool, level, f"{enqueue_rate:.0f}", f"{done_rate:.0f}")
    client.flushdb()
    Console().print(table)


if __name__ == "__main__":
    from sandbox.stack.lifeline import stop_cleanly_on

    stop_cleanly_on()  # SIGTERM/SIGHUP unwind through the finally blocks that stop the servers
    main()
