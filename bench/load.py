"""Load run: N subscriber messages through a whole stack with faults injected, nothing lost or doubled.

    .venv/bin/python bench/load.py --n 10000            # faults 1, 3 and 5 during the run
    .venv/bin/python bench/load.py --n 2000 --no-faults # the same without faults, for comparison

The stack is the fault suite's harness (``tests.faults.harness.Stack``): its own Valkey (append-only),
Tansu, both simulators in this process, prefork workers and ingest processes. Messages are produced by
the RosDomofon simulator's subscriber stand-in (``--rate`` per second, 0 = as fast as it can), spread
over ``--subscribers`` subscribers. Faults, by progress (share of messages posted):

* 20%: ``kill -9`` of a worker, restarted at once (scenario 1);
* 45%: Redis stopped for ``--outage`` seconds and started again (scenario 3);
* 70%: a Bitrix24 rate-limit storm, 5xx bursts on posting and contact lookup, RosDomofon 503s and
  token expiry (scenario 5).

Latency is produce -> first sight of the post in the Bitrix24 simulator (polled every second), so it
includes queueing behind the backlog. Lost = produced, never posted; duplicated = extra posts plus
extra contacts per subscriber.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.table import Table

from tasks.state import inflight
from tests.faults import tally
from tests.faults.harness import Stack, StackOptions

POLL = 1.0


@dataclass
class Progress:
    produced_at: dict[str, float] = field(default_factory=dict)
    posted_at: dict[str, float] = field(default_factory=dict)
    cursor: dict[int, int] = field(default_factory=dict)
    faults: list[tuple[float, str]] = field(default_factory=list)
    producing_done: threading.Event = field(default_factory=threading.Event)


def produce(
    stack: Stack, n: int, subscribers: list[tuple[int, str]], rate: float, progress: Progress
) -> None:
    assert stack.sims is not None
    started = time.monotonic()
    for index in range(n):
        if rate > 0:
            due = started + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        abonent_id, _ = subscribers[index % len(subscribers)]
        mark = tally.marker(stack.run, index)
        progress.produced_at[mark] = time.monotonic()
        stack.sims.rosdomofon.send_from_subscriber(abonent_id, f"{mark} load message")
    progress.producing_done.set()


def observe(stack: Stack, progress: Progress) -> None:
    assert stack.sims is not None
    seen = tally.count_markers(stack.run, stack.sims.new_posted_texts(progress.cursor))
    now = time.monotonic()
    for mark in seen:
        progress.posted_at.setdefault(mark, now)


def inject(stack: Stack, name: str, progress: Progress, outage: float) -> None:
    assert stack.sims is not None and stack.redis_server is not None
    progress.faults.append((time.monotonic(), name))
    if name == "worker kill -9":
        worker = stack.workers["worker1"]
        worker.kill()
        worker.start(timeout=90)
    elif name == "redis restart":
        stack.redis_server.stop()
        time.sleep(outage)
        stack.redis_server.start()
    elif name == "service faults":
        bitrix24, rosdomofon = stack.sims.bitrix24, stack.sims.rosdomofon
        bitrix24.inject("storm", seconds=3.0)
        bitrix24.inject(
            "error", method="imconnector.send.messages", count=5, status=500, code="INTERNAL_SERVER_ERROR"
        )
        bitrix24.inject("error", method="crm.duplicate.findbycomm", count=5, status=502, code="")
        rosdomofon.expire_tokens()
        rosdomofon.faults.update(fail_next=3, fail_status=503)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(args: argparse.Namespace) -> int:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="rdb24-load-"))
    options = StackOptions(
        accounts=max(args.subscribers, 10),
        partitions=args.partitions,
        redis_fsync="everysec",
        env={
            "ACCOUNTS_INDEX_MIN_REFRESH": "0",
            # The client's shared leaky bucket would pace the whole run at the portal's 2 req/s
            # (about 1.4 messages/s); the load run measures our pipeline, as bench/ingest.py does.
            "BITRIX24_RATE": str(args.bitrix24_rate),
            "BITRIX24_BURST": str(max(50, int(args.bitrix24_rate))),
            "VISIBILITY_TIMEOUT": str(args.visibility_timeout),
        },
    )
    schedule = (
        []
        if args.no_faults
        else [(0.20, "worker kill -9"), (0.45, "redis restart"), (0.70, "service faults")]
    )
    progress = Progress()
    with Stack(workdir, options) as stack:
        assert stack.sims is not None
        for index in range(args.workers):
            stack.worker(f"worker{index + 1}", concurrency=args.concurrency)
        for index in range(args.ingest):
            stack.ingest(f"ingest{index + 1}")
        subscribers = stack.subscribers(args.subscribers)
        console.print(
            f"stack up in {workdir}; producing {args.n} messages from {len(subscribers)} subscribers"
        )
        producer = threading.Thread(
            target=produce, args=(stack, args.n, subscribers, args.rate, progress), daemon=True
        )
        first_produce = time.monotonic()
        producer.start()
        deadline = first_produce + args.timeout
        last_done, last_change = 0, first_produce
        while time.monotonic() < deadline:
            observe(stack, progress)
            done = len(progress.posted_at)
            if schedule and done >= schedule[0][0] * args.n:
                _, name = schedule.pop(0)
                console.print(
                    f"[{time.monotonic() - first_produce:6.1f}s] {done}/{args.n} posted: injecting {name}"
                )
                inject(stack, name, progress, args.outage)
            if progress.producing_done.is_set() and done >= args.n:
                break
            if done > last_done:
                last_done, last_change = done, time.monotonic()
            elif (
                not schedule
                and time.monotonic() - last_change > args.stall
                and not any(stack.pending().values())
            ):
                console.print(
                    f"[red]no progress for {args.stall:g}s with nothing queued or unacked: giving up"
                )
                break
            time.sleep(POLL)
        last_post = max(progress.posted_at.values(), default=time.monotonic())
        try:
            stack.wait_settled(timeout=60)
        except AssertionError as exc:
            console.print(f"[red]not settled: {str(exc).splitlines()[0]}")
        posts = tally.tally(
            list(progress.produced_at), tally.count_markers(stack.run, stack.sims.posted_texts())
        )
        contacts = stack.contacts_for([phone for _, phone in subscribers[: min(args.n, len(subscribers))]])
        letters = stack.dead_letters()
        left_in_flight = inflight.count(stack.redis())  # all posted or dead-lettered: should be 0
        calls = stack.sims.bitrix24_calls()
    latencies = [
        progress.posted_at[m] - progress.produced_at[m]
        for m in progress.posted_at
        if m in progress.produced_at
    ]
    elapsed = last_post - first_produce
    table = Table(
        title=f"bench/load.py: {args.n} subscriber messages, faults {'off' if args.no_faults else '1, 3, 5'}"
    )
    for column in ("metric", "value"):
        table.add_column(column)
    rows = [
        ("messages produced", str(len(progress.produced_at))),
        ("messages posted", str(posts.expected - len(posts.lost))),
        ("wall time (first produce -> last post)", f"{elapsed:.1f} s"),
        ("throughput", f"{len(progress.posted_at) / elapsed:.1f} msg/s" if elapsed > 0 else "-"),
        (
            "latency p50 / p95 / p99",
            " / ".join(f"{percentile(latencies, q):.2f} s" for q in (0.5, 0.95, 0.99)),
        ),
        ("latency mean", f"{statistics.fmean(latencies):.2f} s" if latencies else "-"),
        ("lost", str(len(posts.lost))),
        ("duplicated chat posts", str(posts.extra)),
        ("duplicated contacts", str(contacts.extra)),
        ("missing contacts", str(len(contacts.lost))),
        ("dead letters", str(len(letters))),
        ("left in the in-flight ledger", str(left_in_flight)),
        ("Bitrix24 requests", str(sum(calls.values()))),
        (
            "workers x concurrency / ingest / partitions",
            f"{args.workers}x{args.concurrency} / {args.ingest} / {args.partitions}",
        ),
        ("faults", ", ".join(f"{name} @{at - first_produce:.0f}s" for at, name in progress.faults) or "none"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for letter in letters[:5]:
        console.print(f"dead letter {letter.id}: {letter.name} {letter.reason}: {letter.error[:200]}")
    ok = not posts.lost and not posts.extra and contacts.exact and left_in_flight == 0
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="subscriber messages to produce")
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="prefork processes per worker")
    parser.add_argument("--ingest", type=int, default=1, help="ingest processes")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--rate", type=float, default=0.0, help="messages produced per second; 0 = unpaced")
    parser.add_argument("--outage", type=float, default=4.0, help="seconds Redis stays down")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--stall", type=float, default=90.0, help="stop after this long without progress")
    parser.add_argument("--bitrix24-rate", type=float, default=1000.0, help="client-side Bitrix24 req/s")
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=30,
        help="seconds; the fault suite's 10 s is too tight under a backlog",
    )
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    from sandbox.stack.lifeline import stop_cleanly_on

    stop_cleanly_on()  # SIGTERM/SIGHUP unwind through the finally blocks that stop the servers
    main()
