"""End-to-end throughput and latency of the ingest path: Kafka MESSAGES_IN -> ``rdb24 ingest`` ->
Celery chain (lookup account -> find/create contact -> post to chat) -> Bitrix24 chat post.

Starts everything itself: a bundled Valkey (Celery broker and backend) and Tansu (Kafka), the
RosDomofon and Bitrix24 simulators in this process (the Bitrix24 one as an OAuth app with Open Lines,
as ``make run`` starts it; ``--mode crm_chat`` for a webhook-only portal), worker subprocess(es)
and one ingest subprocess. Produces N subscriber messages in RosDomofon's real shape and measures:

- throughput: N / (last chat post - first produce), messages/s;
- latency produce -> chat post, p50/p95/p99 (post time is when a poller first sees the post in the
  simulator's chat store, every 20 ms); ``--rate`` paces the producer so latency is not queueing;
- Bitrix24 and RosDomofon HTTP requests per message (from the simulators' call logs) and, with
  ``--portal-limit``, the floor: the time the portal's bucket needs for those requests
  ((requests - burst) / rate), i.e. messages / messages per request / rate;
- unless ``--no-baseline``, a bare Celery three-step no-op chain on the same workers (N chains), and
  our throughput as a fraction of it. Its results are polled from the backend (MGET), never waited
  on through Celery's result pub/sub, which was seen to hang for minutes after every task finished.

``--portal-limit``: the portal's real limit (2 requests/s, burst 50) and our shared limiter the same.
``--reconcile-during``: after the main run, ``--live-n`` paced live messages idle, then the same
while a reconciliation of ``--reconcile-accounts`` accounts runs; prints both p95 and their ratio.

Every phase has a deadline (``--timeout``) and a watchdog ends the process (and, through the
parent-death signal, every subprocess) if the whole bench outlives its budget.

    .venv/bin/python bench/ingest.py --n 2000 --workers 1 --concurrency 8
    .venv/bin/python bench/ingest.py --portal-limit --n 2000 --subscribers 200
    .venv/bin/python bench/ingest.py --portal-limit --n 600 --subscribers 200 --rate 10 --no-baseline
    .venv/bin/python bench/ingest.py --portal-limit --n 200 --reconcile-during --no-baseline
"""

from __future__ import annotations

import collections
import json
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from tests.support.simulators import openlines_env  # noqa: E402

TAG = re.compile(r"\[bench:(\w+):(\d+)\]")
BURST = 50
RATE = 2.0
WORKER_QUEUES = {"worker_flows": ["flows", "reconcile"], "worker_api": ["rosdomofon", "bitrix24"]}


def message_mix(
    sim: RosDomofonSimulator, n: int, *, subscribers: int = 0, skip: int = 0, seed: int = 5
) -> list[tuple[int, int, int]]:
    """Who writes each message.

    ``subscribers`` = 0: ~60% repeat writers, ~30% first-time account owners, ~10% unknown phones.
    ``subscribers`` = K: K writers (9 in 10 account owners, the rest unknown phones), each message
    from one of them at random. ``skip`` leaves out the first owners (used by an earlier phase).
    """
    rng = random.Random(seed + skip)
    with sim.world.lock:
        owners = [
            sim.world.abonents[a.owner_id] for a in sorted(sim.world.accounts.values(), key=lambda a: a.id)
        ][skip:]
        company_id = next(iter(sim.world.companies))
    fresh = iter(owners)

    def unknown() -> tuple[int, int, int]:
        with sim.world.lock:
            abonent = sim.world.add_abonent(79_500_000_000 + rng.randrange(10**8), company_id)
        return abonent.id, abonent.phone, abonent.company_id

    if subscribers:
        writers = []
        for index in range(subscribers):
            owner = next(fresh, None) if index % 10 else None
            writers.append((owner.id, owner.phone, owner.company_id) if owner else unknown())
        return [rng.choice(writers) for _ in range(n)]
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
        seen.append(unknown())
        senders.append(seen[-1])
    return senders


class PostWatcher:
    """Records when each ``[bench:<phase>:i]`` post of one phase first appears in the simulator."""

    def __init__(self, sim: Bitrix24Simulator, phase: str, interval: float = 0.02) -> None:
        self.sim = sim
        self.phase = phase
        self.interval = interval
        self.seen: dict[int, float] = {}
        self.copies: dict[int, int] = {}
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
                        for phase, index in TAG.findall(str(message.get("text", ""))):
                            if phase == self.phase:
                                self.seen.setdefault(int(index), now)
                                self.copies[int(index)] = self.copies.get(int(index), 0) + 1
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


@dataclass(frozen=True)
class Options:
    workers: int
    concurrency: int
    pool: str
    partitions: int
    portal_limit: bool
    mode: str
    accounts: int
    split: bool


def b24_env(b24: Bitrix24Simulator, options: Options) -> dict[str, str]:
    limit = {"BITRIX24_RATE": str(RATE), "BITRIX24_BURST": str(BURST)} if options.portal_limit else {}
    if options.mode == "openlines":
        return {**openlines_env(b24, "http://127.0.0.1:9"), **limit}
    return {
        "BITRIX24_WEBHOOK_URL": b24.webhook_url,
        "CHAT_MODE": "crm_chat",
        **(limit or {"BITRIX24_RATE": "100000", "BITRIX24_BURST": "100000"}),
    }


@contextmanager
def stack(options: Options, log_dir: Path) -> Iterator[dict]:
    with ExitStack() as stack_:
        valkey = embedded.valkey().start()
        stack_.callback(valkey.stop)
        tansu = embedded.tansu().start()
        stack_.callback(tansu.stop)
        redis_url = f"redis://127.0.0.1:{valkey.port}/0"
        bootstrap = f"127.0.0.1:{tansu.port}"
        company = "BENCH_SB"
        create_topics(bootstrap, f"MESSAGES_IN_{company}", partitions=options.partitions)
        rd = RosDomofonSimulator(accounts=options.accounts, seed=3, company=company).start()
        stack_.callback(rd.stop)
        b24 = Bitrix24Simulator(rate=RATE, burst=BURST, rate_limit=options.portal_limit).start()
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
            **b24_env(b24, options),
        }
        # As `make run` and deploy/ split them: the chains' cheap steps apart from the Bitrix24 and
        # RosDomofon calls, so a rate-limited backlog never blocks the steps that feed it.
        layout = WORKER_QUEUES if options.split else {"worker": None}
        for index in range(options.workers):
            for name, queues in layout.items():
                worker = CeleryWorker(
                    app, env, log_dir / f"{name}-{index}.log", pool=options.pool,
                    concurrency=options.concurrency, queues=queues, include=("bench.noop_chain",),
                ).start()  # fmt: skip
                stack_.callback(worker.stop)
        ingest = IngestProcess(
            ingest_env(env, bootstrap=bootstrap, company=company, group=f"rdb24-{company}"),
            log_dir / "ingest.log",
        ).start()
        stack_.callback(ingest.stop)
        import redis

        client = redis.Redis.from_url(redis_url)
        stack_.callback(client.close)
        ingest.wait_assigned(client)
        yield {"app": app, "rd": rd, "b24": b24, "bootstrap": bootstrap, "company": company, "redis": client}


def b24_requests(b24: Bitrix24Simulator) -> int:
    """HTTP requests the portal counted (the commands inside a ``batch`` are not requests)."""
    with b24.portal.lock:
        return sum(1 for c in b24.portal.calls if c["batch"] is None)


def b24_methods(b24: Bitrix24Simulator, since: int) -> str:
    """HTTP requests per method since the ``since``-th logged call, most first."""
    with b24.portal.lock:
        calls = list(b24.portal.calls[since:])
    counts: collections.Counter[str] = collections.Counter()
    inner: collections.Counter[str] = collections.Counter()
    for call in calls:
        (counts if call["batch"] is None else inner)[call["method"]] += 1
    text = ", ".join(f"{method} {count}" for method, count in counts.most_common())
    if inner:
        text += " (inside batch: " + ", ".join(f"{m} {c}" for m, c in inner.most_common()) + ")"
    return text


def run_pipeline(
    ctx: dict, n: int, timeout: float, *, rate: float = 0.0, subscribers: int = 0, skip: int = 0,
    phase: str = "main",
) -> dict[str, Any]:  # fmt: skip
    rd, b24 = ctx["rd"], ctx["b24"]
    senders = message_mix(rd, n, subscribers=subscribers, skip=skip)
    text = "Не работает домофон [bench:{}:{}]"
    values = [subscriber_payload(*who, text.format(phase, i)) for i, who in enumerate(senders)]
    rd.calls.reset()
    requests_before = b24_requests(b24)
    with b24.portal.lock:
        calls_before = len(b24.portal.calls)
    watcher = PostWatcher(b24, phase).start()
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
        time.sleep(0.5)  # a duplicate would show up right after its original
    finally:
        watcher.stop()
    latencies = [watcher.seen[i] - sent_at[i] for i in range(n)]
    elapsed = max(watcher.seen.values()) - min(sent_at.values())
    requests = b24_requests(b24) - requests_before
    return {
        "throughput": n / elapsed,
        "elapsed": elapsed,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "mean": statistics.fmean(latencies),
        "b24_requests": requests,
        "b24_per_msg": requests / n,
        "rd_per_msg": len(rd.calls.calls()) / n,
        "subscribers": len(set(senders)),
        "messages": n,
        "methods": b24_methods(b24, calls_before),
        "duplicates": sum(c - 1 for c in watcher.copies.values()),
        "floor": max(0.0, requests - BURST) / RATE,
    }


def run_baseline(app: Celery, client: Any, n: int, timeout: float) -> dict[str, float]:
    """N bare three-step chains; their last results are polled from the backend (MGET), no pub/sub."""
    from celery import chain

    step = app.signature("bench.noop_step")
    started = time.time()
    ids = [
        chain(step.clone(kwargs={"i": i}), step.clone(), step.clone()).apply_async(ignore_result=False).id
        for i in range(n)
    ]
    keys = [f"celery-task-meta-{task_id}" for task_id in ids]
    done_at: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done_at) < n:
        if time.monotonic() > deadline:
            raise click.ClickException(f"baseline: {n - len(done_at)} chains unfinished after {timeout:g}s")
        pending = [k for k in keys if k not in done_at]
        for start in range(0, len(pending), 500):
            chunk = pending[start : start + 500]
            for key, raw in zip(chunk, client.mget(chunk), strict=True):
                if raw is None:
                    continue
                meta = json.loads(raw)
                if meta.get("status") == "SUCCESS" and meta.get("date_done"):
                    stamp = datetime.fromisoformat(meta["date_done"])
                    done_at[key] = (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
        time.sleep(0.1)
    return {"throughput": n / (max(done_at.values()) - started), "elapsed": max(done_at.values()) - started}


def run_with_reconciliation(ctx: dict, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Live p95 idle, then with a reconciliation of every account running (started first)."""
    live = {"rate": args["live_rate"], "subscribers": args["live_n"] // 2}
    idle = run_pipeline(ctx, args["live_n"], args["timeout"], phase="idle", skip=args["n"], **live)
    app = ctx["app"]
    started = app.send_task("reconcile.run", kwargs={"full": True})
    b24 = ctx["b24"]
    before = b24_requests(b24)
    wait_for(lambda: b24_requests(b24) > before + 20, args["timeout"], "reconciliation writing")
    busy = run_pipeline(
        ctx, args["live_n"], args["timeout"], phase="busy", skip=args["n"] + args["live_n"], **live
    )
    meta = ctx["redis"].get(f"celery-task-meta-{started.id}")
    busy["reconcile_done"] = float(meta is not None and json.loads(meta).get("status") == "SUCCESS")
    app.control.revoke(started.id, terminate=False)
    return {"idle": idle, "busy": busy}


def _watchdog(seconds: float) -> None:
    """End the bench (and, by the parent-death signal, its subprocesses) if it outlives its budget."""

    def fire() -> None:
        print(f"bench/ingest.py: still running after {seconds:g}s; exiting", file=sys.stderr, flush=True)
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def print_results(
    title: str, ours: dict[str, Any], bare: dict[str, float] | None, portal_limit: bool
) -> None:
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("distinct subscribers", f"{ours['subscribers']:.0f}")
    table.add_row("throughput, messages/s (first produce -> last chat post)", f"{ours['throughput']:.1f}")
    table.add_row("elapsed, s", f"{ours['elapsed']:.1f}")
    for key in ("p50", "p95", "p99", "mean"):
        table.add_row(f"latency {key}, s (produce -> chat post)", f"{ours[key]:.3f}")
    table.add_row("Bitrix24 requests", f"{ours['b24_requests']:.0f}")
    table.add_row("Bitrix24 requests per message", f"{ours['b24_per_msg']:.3f}")
    table.add_row("Bitrix24 requests by method", str(ours["methods"]))
    table.add_row("RosDomofon requests per message", f"{ours['rd_per_msg']:.2f}")
    table.add_row("duplicated posts", f"{ours['duplicates']:.0f}")
    if portal_limit:
        table.add_row(f"floor, s ((requests - {BURST}) / {RATE:g} req/s)", f"{ours['floor']:.1f}")
    if bare is not None:
        table.add_row("bare Celery 3-step no-op chain, chains/s", f"{bare['throughput']:.1f}")
        table.add_row(
            "our throughput / bare chain throughput", f"{ours['throughput'] / bare['throughput']:.2f}"
        )
    Console().print(table)


def print_reconcile(phases: dict[str, dict[str, Any]], accounts: int) -> None:
    table = Table(title=f"Live messages during a reconciliation of {accounts} accounts")
    for column in ("phase", "messages", "p50, s", "p95, s", "p99, s", "Bitrix24 requests"):
        table.add_column(column, justify="right")
    for name, phase in phases.items():
        table.add_row(
            name, f"{phase['messages']:.0f}", f"{phase['p50']:.3f}",
            f"{phase['p95']:.3f}", f"{phase['p99']:.3f}", f"{phase['b24_requests']:.0f}",
        )  # fmt: skip
    ratio = phases["busy"]["p95"] / phases["idle"]["p95"]
    table.add_row("busy p95 / idle p95", "", "", f"{ratio:.2f}", "", "")
    Console().print(table)
    for name, phase in phases.items():
        Console().print(f"{name}: Bitrix24 requests by method: {phase['methods']}")


@click.command()
@click.option("--n", default=2000, show_default=True, help="Subscriber messages (and baseline chains).")
@click.option("--subscribers", default=0, show_default=True, help="Writers (0: the mixed default).")
@click.option("--workers", default=1, show_default=True, help="Celery worker processes.")
@click.option("--concurrency", default=8, show_default=True)
@click.option("--pool", default="threads", show_default=True, type=click.Choice(["threads", "prefork"]))
@click.option("--partitions", default=3, show_default=True)
@click.option("--timeout", default=900.0, show_default=True, help="Seconds to wait for each phase.")
@click.option(
    "--rate", default=0.0, show_default=True, help="Produce at this many messages/s (0: one burst)."
)
@click.option("--portal-limit", is_flag=True, help="The portal's real 2 req/s, burst 50; our limiter too.")
@click.option("--mode", default="openlines", show_default=True, type=click.Choice(["openlines", "crm_chat"]))
@click.option("--baseline/--no-baseline", default=True, show_default=True)
@click.option(
    "--split/--single", default=True, show_default=True,
    help="Per --workers: a flows worker and an API worker (as `make run`), or one for every queue.",
)  # fmt: skip
@click.option("--reconcile-during", is_flag=True, help="Live p95 idle vs during a reconciliation.")
@click.option("--reconcile-accounts", default=10_000, show_default=True)
@click.option("--live-n", default=200, show_default=True, help="Live messages per reconcile phase.")
@click.option("--live-rate", default=5.0, show_default=True, help="Their rate, messages/s.")
def main(**args: Any) -> None:
    reconciled = args["reconcile_accounts"] if args["reconcile_during"] else 0
    options = Options(
        workers=args["workers"], concurrency=args["concurrency"], pool=args["pool"],
        partitions=args["partitions"], portal_limit=args["portal_limit"], mode=args["mode"],
        accounts=max(600, args["subscribers"] + 100, reconciled), split=args["split"],
    )  # fmt: skip
    _watchdog(args["timeout"] * 4 + 300)
    phases = None
    bare = None
    with tempfile.TemporaryDirectory() as tmp, stack(options, Path(tmp)) as ctx:
        ours = run_pipeline(
            ctx, args["n"], args["timeout"], rate=args["rate"], subscribers=args["subscribers"]
        )
        if args["reconcile_during"]:
            phases = run_with_reconciliation(ctx, args)
        if args["baseline"]:
            bare = run_baseline(ctx["app"], ctx["redis"], args["n"], args["timeout"])
    limit = f"portal limit {RATE:g} req/s burst {BURST}" if options.portal_limit else "no portal limit"
    produced = f"produced at {args['rate']:g}/s" if args["rate"] else "produced in one burst"
    print_results(
        f"Ingest end to end ({options.mode}, {limit}): {args['n']} messages, {options.workers} "
        f"{'flows+API worker pair(s)' if options.split else 'worker(s)'} x {options.pool} "
        f"{options.concurrency}, {options.partitions} partitions, {produced}",
        ours, bare, options.portal_limit,
    )  # fmt: skip
    if phases is not None:
        print_reconcile(phases, options.accounts)


if __name__ == "__main__":
    from sandbox.stack.lifeline import stop_cleanly_on

    stop_cleanly_on()  # SIGTERM/SIGHUP unwind through the finally blocks that stop the servers
    main()
