"""``Stack``: a whole system on free ports that a scenario can crash piece by piece.

What it owns, and may therefore stop: its own Valkey (append-only file, so a restart keeps queues,
unacked messages, effect markers and dead letters, as a production Redis with persistence does), its
own Tansu (S3 storage behind a local moto server when the broker must survive a restart), the two
simulators in this process, and every worker, ingest, beat, webhook and Flower process it started.
It never touches the machine's Redis or the session's Kafka.

Every process gets the same fast settings (short visibility timeout, small backoffs) and the same
distinctive secrets (:class:`Secrets`), so the security checks can scan everything they printed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from sandbox.stack import embedded
from schemas.dead_letters import DeadLetter
from tasks.runtime.queues import Queue
from tasks.state.dead_letters import DeadLetterStore
from tests.conftest import create_topics
from tests.faults import tally
from tests.faults.procs import REPO_ROOT, ManagedProcess, ProcessFailedError, venv_command
from tests.faults.servers import LocalS3, dedicated_valkey, local_s3, persistent_tansu
from tests.faults.sims import Simulators
from tests.support.celery_worker import FAST_RETRY_ENV, CeleryWorker

VISIBILITY_TIMEOUT = 10  # seconds; identical on every process (Settings reads VISIBILITY_TIMEOUT)

# On top of the task-layer fixture's fast retries: the short visibility timeout, a 1 s unacked sweep,
# soft shutdown on SIGTERM, and a retry budget wide enough for the injected fault bursts.
FAULTS_ENV = {
    **FAST_RETRY_ENV,
    "VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
    "REDIS_RESTORE_INTERVAL": "1",
    "MAX_RETRIES": "10",
    "MAX_RATE_LIMIT_RETRIES": "40",
    "RATE_LIMIT_WAIT_MAX": "3",
    "WORKER_SOFT_SHUTDOWN_TIMEOUT": "8",
    "REMAP_SIGTERM": "SIGQUIT",
    "KAFKA_SESSION_TIMEOUT_MS": "6000",
    "INGEST_RETRY_BACKOFF_MAX": "2",
    "INGEST_SHUTDOWN_TIMEOUT": "10",
    "LOG_LEVEL": "INFO",
    "PYTHONUNBUFFERED": "1",
}
ALL_QUEUES = [q.value for q in Queue]


@dataclass(frozen=True)
class Secrets:
    """Distinctive values, so a leak of any of them is found by a plain substring search."""

    rosdomofon_password: str = field(default_factory=lambda: f"rdpw-{secrets.token_hex(12)}")
    bitrix24_webhook_secret: str = field(default_factory=lambda: f"b24wh{secrets.token_hex(10)}")
    bitrix24_client_secret: str = field(default_factory=lambda: f"b24cs-{secrets.token_hex(12)}")
    bitrix24_application_token: str = field(default_factory=lambda: f"b24app{secrets.token_hex(12)}")
    flower_password: str = field(default_factory=lambda: f"flpw-{secrets.token_hex(12)}")

    def named(self) -> dict[str, str]:
        return dict(vars(self))


@dataclass(frozen=True)
class SentMessage:
    marker: str
    abonent_id: int
    phone: str
    sent_at: float


@dataclass
class StackOptions:
    company: str = "FAULTS"
    partitions: int = 2
    accounts: int = 30
    persistent_kafka: bool = False  # S3-backed Tansu: survives kill/restart with data and offsets
    persistent_redis: bool = True  # append-only file: survives restart with queues and markers
    redis_fsync: str = "always"  # appendfsync; "everysec" for load runs (a restart is a clean stop)
    env: dict[str, str] = field(default_factory=dict)  # per-scenario overrides
    log_level: str = "INFO"


class Stack:
    def __init__(self, workdir: Path, options: StackOptions | None = None) -> None:
        self.workdir = workdir
        self.options = options or StackOptions()
        self.secrets = Secrets()
        self.run = uuid.uuid4().hex[:6]
        self.redis_server: embedded.EmbeddedServer | None = None
        self.kafka_server: embedded.EmbeddedServer | None = None
        self.s3: LocalS3 | None = None
        self.sims: Simulators | None = None
        self.workers: dict[str, CeleryWorker] = {}
        self.processes: dict[str, ManagedProcess] = {}
        self.sent: list[SentMessage] = []
        self._probe: Celery | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Stack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_server = self._valkey().start()
        if self.options.persistent_kafka:
            self.s3 = local_s3()
            self.kafka_server = persistent_tansu(self.s3)
        else:
            self.kafka_server = embedded.tansu()
        self.kafka_server.log_path = self.workdir / "tansu.log"
        self.kafka_server.start()
        create_topics(self.bootstrap, self.topic_in, partitions=self.options.partitions)
        create_topics(self.bootstrap, self.topic_out, self.topic_in + ".DLQ")
        self.sims = Simulators.start(
            company=self.options.company,
            accounts=self.options.accounts,
            kafka_bootstrap=self.bootstrap,
            secrets=self.secrets,
        )
        return self

    def _valkey(self) -> embedded.EmbeddedServer:
        server = dedicated_valkey()
        server.log_path = self.workdir / "valkey.log"
        if self.options.persistent_redis:
            data = self.workdir / "valkey-data"
            data.mkdir(exist_ok=True)
            # Later arguments win: durable like a production Redis, each write on disk before the reply.
            server.argv += [
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.options.redis_fsync,
            ]
        return server

    def close(self) -> None:
        for worker in self.workers.values():
            worker.kill()
        for process in self.processes.values():
            process.kill()
        if self.sims is not None:
            self.sims.stop()
        for server in (self.kafka_server, self.redis_server):
            if server is not None:
                server.kill()
        if self.s3 is not None:
            self.s3.stop()
        if self._probe is not None:
            self._probe.close()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- addresses and environment ------------------------------------------------------------------
    @property
    def redis_url(self) -> str:
        assert self.redis_server is not None
        return f"redis://127.0.0.1:{self.redis_server.port}/0"

    @property
    def bootstrap(self) -> str:
        assert self.kafka_server is not None
        return f"127.0.0.1:{self.kafka_server.port}"

    @property
    def topic_in(self) -> str:
        return f"MESSAGES_IN_{self.options.company}"

    @property
    def topic_out(self) -> str:
        return f"MESSAGES_OUT_{self.options.company}"

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of every product process: the simulators, the fast settings, the secrets."""
        assert self.sims is not None
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "PYTEST_", "REMAP_"))}
        base.update(FAULTS_ENV)
        base.update(
            {
                "PYTHONPATH": str(REPO_ROOT),
                "REDIS_URL": self.redis_url,
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "KAFKA_GROUP_ID": f"rdb24-faults-{self.run}",
                "COMPANY_SHORT_NAME": self.options.company,
                "FLOWER_USER": "admin",
                "FLOWER_PASSWORD": self.secrets.flower_password,
                "LOG_LEVEL": self.options.log_level,
                "METRICS_PORT": "0",
                "INGEST_METRICS_PORT": "0",
                # every receiver of this stack (a restarted one too) shares it, and no other stack does
                "WEBHOOK_SPOOL_DIR": str(self.workdir / "webhook-spool"),
            }
        )
        base.update(self.sims.env())
        base.update(self.options.env)
        base.update(overrides)
        return base

    @property
    def probe(self) -> Celery:
        """A private Celery app on our Valkey, for ping/inspect (never the process-global ``tasks.app``)."""
        if self._probe is None:
            self._probe = Celery(
                "faults-probe", broker=self.redis_url, backend=self.redis_url, set_as_current=False
            )
            self._probe.conf.broker_connection_retry_on_startup = True
        return self._probe

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=5)

    # --- product processes --------------------------------------------------------------------------
    def worker(
        self,
        name: str,
        *,
        concurrency: int = 2,
        queues: list[str] | None = None,
        include: tuple[str, ...] = (),
        **env: str,
    ) -> CeleryWorker:
        """A prefork ``celery -A tasks worker`` (all queues by default), started and answering ping.

        ``include``: extra task modules (``tests.support.probe_tasks`` for scripted probe tasks).
        """
        worker = CeleryWorker(
            self.probe,
            self.env(**env),
            self.workdir / f"{name}.log",
            pool="prefork",
            concurrency=concurrency,
            queues=queues or ALL_QUEUES,
            include=include,
        )
        worker.hostname = f"{name}-{self.run}@localhost"
        self.workers[name] = worker
        return worker.start(timeout=90)

    def process(self, name: str, argv: list[str], **env: str) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.env(**env), self.workdir / f"{name}.log")
        self.processes[name] = process
        return process.start()

    def ingest(self, name: str = "ingest", **env: str) -> ManagedProcess:
        return self.process(name, [venv_command("rdb24"), "ingest"], **env)

    def beat(self, name: str = "beat", **env: str) -> ManagedProcess:
        argv = [sys.executable, "-m", "celery", "-A", "tasks", "beat", "-S", "redbeat.RedBeatScheduler"]
        return self.process(name, [*argv, "--loglevel", "INFO"], **env)

    def webhook(self, port: int, name: str = "webhook", **env: str) -> ManagedProcess:
        argv = [venv_command("rdb24"), "webhook", "--host", "127.0.0.1", "--port", str(port)]
        process = self.process(name, argv, **env)
        embedded.wait_for_port("127.0.0.1", port, timeout=30, proc=process.process)
        return process

    def flower(self, port: int, name: str = "flower", **env: str) -> ManagedProcess:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ]
        process = self.process(name, argv, **env)
        embedded.wait_for_port("127.0.0.1", port, timeout=30, proc=process.process)
        return process

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``rdb24 ...`` against this stack; its output is appended to ``cli.log`` for the scans."""
        done = subprocess.run(
            [venv_command("rdb24"), *args],
            env=self.env(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        with open(self.workdir / "cli.log", "a") as log:
            log.write(f"$ rdb24 {' '.join(args)}\n{done.stdout}{done.stderr}\n")
        return done

    # --- traffic -----------------------------------------------------------------------------------
    def subscribers(self, count: int) -> list[tuple[int, str]]:
        """``count`` subscribers (abonent id, phone) that own an account in the RosDomofon simulator."""
        assert self.sims is not None
        found = self.sims.account_owners()[:count]
        if len(found) < count:
            raise ProcessFailedError(f"simulator has {len(found)} account owners, {count} wanted")
        return found

    def send(self, count: int, subscribers: list[tuple[int, str]], text: str = "hello") -> list[SentMessage]:
        """Make subscribers (round robin) write ``count`` messages through the simulator's Kafka side."""
        assert self.sims is not None
        batch = []
        for _ in range(count):
            index = len(self.sent)
            abonent_id, phone = subscribers[index % len(subscribers)]
            mark = tally.marker(self.run, index)
            self.sims.rosdomofon.send_from_subscriber(abonent_id, f"{mark} {text}")
            message = SentMessage(mark, abonent_id, phone, time.monotonic())
            self.sent.append(message)
            batch.append(message)
        return batch

    # --- observations ------------------------------------------------------------------------------
    def posts(self) -> tally.Tally:
        assert self.sims is not None
        return tally.tally(
            [m.marker for m in self.sent], tally.count_markers(self.run, self.sims.posted_texts())
        )

    def contacts(self) -> tally.Tally:
        return self.contacts_for(m.phone for m in self.sent)

    def contacts_for(self, phones: Iterable[str]) -> tally.Tally:
        """Each of these subscribers' phones against the portal's contacts: exactly one each."""
        assert self.sims is not None
        return tally.tally(sorted(set(phones)), tally.count_phones(self.sims.contact_phones()))

    def dead_letters(self) -> list[DeadLetter]:
        store = DeadLetterStore(self.redis())
        return store.list(limit=max(store.count(), 1))

    def pending(self) -> dict[str, int]:
        """Celery work not finished: queued messages per queue and unacked (incl. held retries)."""
        client = self.redis()
        counts = {queue: int(client.llen(queue)) for queue in ALL_QUEUES}
        counts["unacked"] = int(client.hlen("unacked"))
        return counts

    def wait_until(
        self, condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.25
    ) -> float:
        """Poll ``condition`` until true; return the elapsed seconds, or fail naming ``what``."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                if condition():
                    return time.monotonic() - started
            for process in self.processes.values():
                if process.crashed:
                    raise ProcessFailedError(
                        f"{process.name} exited on its own while waiting for {what}:\n" + process.tail()
                    )
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{self.diagnostics()}")

    def wait_delivered(self, timeout: float = 90.0) -> float:
        """Wait until every sent message has at least one chat post; returns the monotonic time then."""
        self.wait_until(lambda: not self.posts().lost, timeout, "every message posted to a chat")
        return time.monotonic()

    def wait_settled(self, timeout: float = 60.0) -> None:
        """Wait until no Celery work is queued or unacked, so a late duplicate would already show."""
        self.wait_until(lambda: not any(self.pending().values()), timeout, "queues and unacked drained")

    def diagnostics(self) -> str:
        lines = []
        with contextlib.suppress(Exception):
            lines.append(f"pending: {self.pending()}")
        with contextlib.suppress(Exception):
            lines.append(self.posts().describe("chat posts"))
        with contextlib.suppress(Exception):
            lines.append(f"dead letters: {[(d.name, d.reason, d.error[:200]) for d in self.dead_letters()]}")
        for name, worker in self.workers.items():
            lines.append(
                f"--- {name} (running={worker.running}) tail:\n" + "\n".join(worker.logs().splitlines()[-25:])
            )
        for name, process in self.processes.items():
            lines.append(f"--- {name} (running={process.running}) tail:\n{process.tail(25)}")
        return "\n".join(lines)

    def logs(self) -> Iterator[tuple[str, str]]:
        """Every file this stack's processes wrote, as (name, text): the security scan's input."""
        for path in sorted(self.workdir.glob("*.log")):
            yield path.name, path.read_text(errors="replace")


def kill_at_random(worker: CeleryWorker, rng: Any, low: float, high: float) -> float:
    """Sleep a random moment in ``[low, high)`` seconds, then ``kill -9`` the worker; returns the delay."""
    delay = rng.uniform(low, high)
    time.sleep(delay)
    worker.kill()
    return delay


__all__ = [
    "ALL_QUEUES",
    "FAULTS_ENV",
    "VISIBILITY_TIMEOUT",
    "Secrets",
    "SentMessage",
    "Stack",
    "StackOptions",
]
