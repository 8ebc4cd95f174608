"""End-to-end throughput and latency of the ingest path: Kafka MESSAGES_IN -> ``rdb24 ingest`` ->
Celery chain (lookup account -> find/create contact -> post to chat) -> Bitrix24 chat post.

Starts everything itself: a bundled Valkey (Celery broker and backend) and Tansu (Kafka), the
RosDomofon and Bitrix24 simulators in this process (Bitrix24 rate limit off, and our client-side
limiter raised to match), worker subprocess(es) and one ingest subprocess. Produces N subscriber
messages in RosDomofon's real shape, a mix of repeat subscribers, first-time subscribers and phones
without an account, then measures:

- throughput: N / (last chat post - first produce), messages/s;
- latency produce -> chat post, p50/p95/p99 (post time is when a poller first sees the post in the
  simulator's chat store, every 20 ms; the store's own ``date`` has 1 s resolution);
- Bitrix24 and RosDomofon HTTP requests per message (from the simulators' call logs);
- in the same run, on the same workers, a bare Celery three-step no-op chain (N chains), and our
  throughput as a fraction of it.

    .venv/bin/python bench/ingest.py --n 2000 --workers 1 --concurrency 8
"""

from __future__ import annotations

import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from celery import Celery

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.bitrix24 import Bitrix24Simulator  # noqa: E402
from sandbox.rosdomofon import RosDomofonSimulator  # noqa: E402
from sandbox.stack import embedded  # noqa: E402
from tests.conftest import create_topics  # noqa: E402
from tests.support.celery_worker import CeleryWorker, point_app_at  # noqa: E402
from tests.support.ingest_process import IngestProcess, ingest_env  # noqa: E402
from tests.support.kafka_records import produce, subscriber_payload  # noqa: E402

TAG = re.compile(r"\[\u2060?bench:(\d+)\]")  # a word joiner follows "[" in posted subscriber text


def message_mix(sim: RosDomofonSimulator, n: int, seed: int = 5) -> list[tuple[int, int, int]]:
    """Who writes each message: ~60% repeat writers, ~30% first-time account owners, ~10% unknown phones."""
    rng = random.Random(seed)
    with sim.world.lock:
        owners = [
            sim.world.abonents[a.owner_id] for a in sorted(sim.world.accounts.values(), key=lambda a: a.id)
        ]
        company_id = next(iter(sim.world.companies))
    fresh = iter(owners)
    seen: list[tuple[int, int, int]] = []
    senders = []
    for _ in range(n):
        roll = rng.random()
        if seen and roll < 0.6:
            senders.append(rng.choice(seen))
            continue
        if roll < 0.9:
            owner = next(fresh, None)
            if owner is not None:
                seen.append((owner.id, owner.phone, owner.company_id))
                senders.append(seen[-1])
                continue
        with sim.world.lock:
            abonent = sim.world.add_abonent(79_500_000_000 + rng.randrange(10**8), company_id)
        seen.append((abonent.id, abonent.phone, abonent.company_id))
        senders.append(seen[-1])
    return senders


class PostWatcher:
    """Records when each ``[bench:i]`` post first appears in the Bitrix24 simulator."""

    def __init__(self, sim: Bitrix24Simulator, interval: float = 0.02) -> None:
        self.sim = sim
        self.interval = interval
        self.seen: dict[int, float] = {}
        self._offsets: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PostWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = time.time()
            with self.sim.portal.lock:
                for chat_id, chat in self.sim.portal.chats.items():
                    messages = chat["messages"]
                    start = self._offsets.get(chat_id, 0)
                    for message in messages[start:]:
                        for index in TAG.findall(str(message.get("text", ""))):
                            self.seen.setdefault(int(index), now)
                    self._offsets[chat_id] = len(messages)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise click.ClickException(f"{what} not reached within {timeout:g}s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@contextmanager
def stack(workers: int, concurrency: int, pool: str, partitions: int, log_dir: Path) -> Iterator[dict]:
    with ExitStack() as stack_:
        valkey = embedded.valkey().start()
        stack_.callback(valkey.stop)
        tansu = embedded.tansu().start()
        stack_.callback(tansu.stop)
        redis_url = f"redis://127.0.0.1:{valkey.port}/0"
        bootstrap = f"127.0.0.1:{tansu.port}"
        company = "BENCH_SB"
        create_topics(bootstrap, f"MESSAGES_IN_{company}", partitions=partitions)
        rd = RosDomofonSimulator(accounts=600, seed=3, company=company).start()
        stack_.callback(rd.stop)
        b24 = Bitrix24Simulator(rate_limit=False).start()
        stack_.callback(b24.stop)
        app = point_app_at(redis_url)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PYTEST_"))},
            "REDIS_URL": redis_url,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
            "METRICS_PORT": "0",
            "ROSDOMOFON_BASE_URL": rd.url,
            "ROSDOMOFON_USERNAME": rd.username,
            "ROSDOMOFON_PASSWORD": rd.password,
            "COMPANY_SHORT_NAME": company,
            "BITRIX24_WEBHOOK_URL": b24.webhook_url,
            "CHAT_MODE": "auto",
            "BITRIX24_RATE": "100000",
            "BITRIX24_BURST": "100000",
        }
        started = []
        for index in range(workers):
            worker = CeleryWorker(
                app, env, log_dir / f"worker-{index}.log", pool=pool, concurrency=concurrency,
                include=("bench.noop_chain",),
            ).start()  # fmt: skip
            started.append(worker)
            stack_.callback(worker.stop)
        ingest = IngestProcess(
            ingest_env(env, bootstrap=bootstrap, company=company, group=f"rdb24-{company}"),
            log_dir / "ingest.log",
        ).start()
        stack_.callback(ingest.stop)
        import redis

        client = redis.Redis.from_url(redis_url)
        ingest.wait_assigned(client)
        yield {"app": app, "rd": rd, "b24": b24, "bootstrap": bootstrap, "company": company, "ingest": ingest}


def run_pipeline(ctx: dict, n: int, timeout: float, rate: float = 0.0) -> dict[str, float]:
    rd, b24 = ctx["rd"], ctx["b24"]
    senders = message_mix(rd, n)
    values = [subscriber_payload(*who, f"Не работает домофон [bench:{i}]") for i, who in enumerate(senders)]
    rd.calls.reset()
    with b24.portal.lock:
        b24.portal.calls.clear()
    watcher = PostWatcher(b24).start()
    sent_at: dict[int, float] = {}
    begin = time.time()

    def pace(index: int, now: float) -> None:
        if rate > 0:  # a steady arrival rate instead of one burst: latency without queueing behind N
            delay = begin + index / rate - now
            if delay > 0:
                time.sleep(delay)
                now = time.time()
        sent_at[index] = now

    produce(ctx["bootstrap"], f"MESSAGES_IN_{ctx['company']}", values, on_sent=pace)
    try:
        wait_for(lambda: len(watcher.seen) >= n, timeout, f"{n} chat posts")
    finally:
        watcher.stop()
    latencies = [watcher.seen[i] - sent_at[i] for i in range(n)]
    elapsed = max(watcher.seen.values()) - min(sent_at.values())
    with b24.portal.lock:
        b24_requests = sum(1 for c in b24.portal.calls if c["batch"] is None)
    return {
        "throughput": n / elapsed,
        "elapsed": elapsed,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "mean": statistics.fmean(latencies),
        "b24_per_msg": b24_requests / n,
        "rd_per_msg": len(rd.calls.calls()) / n,
        "subscribers": len(set(senders)),
    }


def run_baseline(app: Celery, n: int, timeout: float) -> dict[str, float]:
    from celery import chain

    step = app.signature("bench.noop_step")
    started = time.time()
    results = [chain(step.clone(kwargs={"i": i}), step.clone(), step.clone()).apply_async() for i in range(n)]
    deadline = time.monotonic() + timeout
    done_at = []
    for result in results:
        result.get(timeout=max(1.0, deadline - time.monotonic()))
        finished = result.date_done
        assert finished is not None, "the backend records date_done with the result get() returned"
        done_at.append(finished.replace(tzinfo=UTC).timestamp())
    return {"throughput": n / (max(done_at) - started), "elapsed": max(done_at) - started}


@click.command()
@click.option("--n", default=2000, show_default=True, help="Subscriber messages (and baseline chains).")
@click.option("--workers", default=1, show_default=True, help="Celery worker processes.")
@click.option("--concurrency", default=8, show_default=True)
@click.option("--pool", default="threads", show_default=True, type=click.Choice(["threads", "prefork"]))
@click.option("--partitions", default=3, show_default=True)
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait for each phase.")
@click.option(
    "--rate", default=0.0, show_default=True, help="Produce at this many messages/s (0: one burst)."
)
def main(
    n: int, workers: int, concurrency: int, pool: str, partitions: int, timeout: float, rate: float
) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        stack(workers, concurrency, pool, partitions, Path(tmp)) as ctx,
    ):
        ours = run_pipeline(ctx, n, timeout, rate)
        bare = run_baseline(ctx["app"], n, timeout)
    table = Table(
        title=f"Ingest end to end: {n} messages, {workers} worker(s) x {pool} {concurrency}, "
        f"{partitions} partitions, " + (f"produced at {rate:g}/s" if rate else "produced in one burst")
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("distinct subscribers", f"{ours['subscribers']:.0f}")
    table.add_row("throughput, messages/s (first produce -> last chat post)", f"{ours['throughput']:.1f}")
    table.add_row("elapsed, s", f"{ours['elapsed']:.1f}")
    for key in ("p50", "p95", "p99", "mean"):
        table.add_row(f"latency {key}, s (produce -> chat post)", f"{ours[key]:.3f}")
    table.add_row("bare Celery 3-step no-op chain, chains/s", f"{bare['throughput']:.1f}")
    table.add_row("our throughput / bare chain throughput", f"{ours['throughput'] / bare['throughput']:.2f}")
    table.add_row("Bitrix24 requests per message", f"{ours['b24_per_msg']:.2f}")
    table.add_row("RosDomofon requests per message", f"{ours['rd_per_msg']:.2f}")
    Console().print(table)


if __name__ == "__main__":
    from sandbox.stack.lifeline import stop_cleanly_on

    stop_cleanly_on()  # SIGTERM/SIGHUP unwind through the finally blocks that stop the servers
    main()
