"""What ``rdb24 up`` will run: which outside services are real and which get a local stand-in.

The decision is a pure function of what the operator configured (``StackInputs``), so it can be
tested and printed before anything starts. The runner (``sandbox.stack.runner``) executes the plan; the
command (``tasks.cli.commands.up``) builds the inputs from ``Settings``. This module knows the names of
the environment variables the product reads, but never reads the environment itself.
"""

from __future__ import annotations

import secrets
import shutil
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from sandbox.stack.embedded import free_port, port_open

LOCAL = "127.0.0.1"
DEMO_COMPANY = "demo"

# Ports tried first so `make run` gives the same URLs every time; a busy one falls back to a free port.
DEFAULT_PORTS = {
    "valkey": 6390,
    "tansu": 9092,
    "rosdomofon": 8081,
    "bitrix24": 8082,
    "webhook": 8085,
    "flower": 5555,
    "metrics": 9808,
    "ingest_metrics": 9809,
}

# Local workers: the API queues apart from the flows, so a rate-limited Bitrix24 backlog never blocks
# the chains that feed it (the same split as deploy/docker-compose.yml, with fewer processes).
WORKERS = {
    "worker_flows": ("flows,reconcile", 2),
    "worker_api": ("rosdomofon,bitrix24", 2),
}


class Source(StrEnum):
    """Where a dependency comes from."""

    CONFIGURED = "configured"  # the operator's own service, used as it is
    LOCAL = "local default"  # nothing configured, but the default local Redis answers
    EMBEDDED = "embedded"  # a stand-in started and stopped by `rdb24 up`


@dataclass(frozen=True)
class StackInputs:
    """What the operator configured, reduced to what the plan needs (no secrets)."""

    redis_url: str
    redis_explicit: bool  # REDIS_URL was set in the environment or .env
    redis_answers: bool
    kafka_bootstrap: str
    rosdomofon_configured: bool
    bitrix24_configured: bool
    company: str
    flower_user: str
    flower_password_set: bool
    force_embedded: bool = False  # tests: a stand-in for everything, whatever is configured
    free_ports: bool = False  # tests: never the fixed default ports


@dataclass(frozen=True)
class ProcessSpec:
    """One supervised process. ``gated`` processes wait until the stand-ins are wired."""

    name: str
    argv: list[str]
    gated: bool = True

    def command(self) -> str:
        return " ".join(self.argv)


@dataclass
class StackPlan:
    """The resolved stack: sources, ports, the environment our processes get, the processes."""

    sources: dict[str, Source]
    ports: dict[str, int]
    env: dict[str, str]  # overrides applied on top of the operator's environment
    processes: list[ProcessSpec] = field(default_factory=list)
    company: str = DEMO_COMPANY
    flower_user: str = "admin"

    def embedded(self, name: str) -> bool:
        return self.sources.get(name) == Source.EMBEDDED

    def url(self, name: str) -> str:
        return f"http://{LOCAL}:{self.ports[name]}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url('webhook')}/bitrix24/events"


def pick_port(name: str, free_ports: bool, taken: set[int]) -> int:
    """The default port if free, else a free one; never one already given to another service."""
    preferred = DEFAULT_PORTS[name]
    port = preferred
    while port in taken or (port == preferred and (free_ports or port_open(LOCAL, preferred))):
        port = free_port(LOCAL)
    taken.add(port)
    return port


def executable(name: str) -> str:
    """A console script of this installation (the venv's ``celery``/``rdb24``), else from PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    return shutil.which(name) or name


def resolve_sources(inputs: StackInputs) -> dict[str, Source]:
    force = inputs.force_embedded
    if force:
        redis = Source.EMBEDDED
    elif inputs.redis_explicit:
        redis = Source.CONFIGURED
    else:
        redis = Source.LOCAL if inputs.redis_answers else Source.EMBEDDED

    def real_or_embedded(configured: bool) -> Source:
        return Source.CONFIGURED if configured and not force else Source.EMBEDDED

    return {
        "redis": redis,
        "kafka": real_or_embedded(bool(inputs.kafka_bootstrap)),
        "rosdomofon": real_or_embedded(inputs.rosdomofon_configured),
        "bitrix24": real_or_embedded(inputs.bitrix24_configured),
    }


def product_processes(ports: dict[str, int], host: str = LOCAL) -> list[ProcessSpec]:
    """Our own roles, in the shape of deploy/Procfile (a test keeps the two in step)."""
    celery, rdb24 = executable("celery"), executable("rdb24")
    specs = [
        ProcessSpec(
            name,
            [
                celery,
                "-A",
                "tasks",
                "worker",
                "-Q",
                queues,
                "-c",
                str(concurrency),
                "-n",
                f"{name}@%h",
                "--loglevel",
                "INFO",
            ],
        )
        for name, (queues, concurrency) in WORKERS.items()
    ]
    specs += [
        ProcessSpec(
            "beat", [celery, "-A", "tasks", "beat", "-S", "redbeat.RedBeatScheduler", "--loglevel", "INFO"]
        ),
        ProcessSpec("ingest", [rdb24, "ingest"]),
        ProcessSpec("webhook", [rdb24, "webhook", "--host", host, "--port", str(ports["webhook"])]),
        ProcessSpec(
            "flower", [celery, "-A", "tasks", "flower", f"--port={ports['flower']}", f"--address={host}"]
        ),
    ]
    return specs


def simulator_processes(plan: StackPlan, kafka_bootstrap: str, accounts: int, seed: int) -> list[ProcessSpec]:
    """The simulators run under the same supervisor as our roles, so their request logs show inline."""
    rdb24 = executable("rdb24")
    specs: list[ProcessSpec] = []
    if plan.embedded("rosdomofon"):
        argv = [
            rdb24,
            "sandbox",
            "rosdomofon",
            "--port",
            str(plan.ports["rosdomofon"]),
            "--accounts",
            str(accounts),
            "--seed",
            str(seed),
            "--company",
            plan.company,
        ]
        if kafka_bootstrap:
            argv += ["--kafka", kafka_bootstrap]
        specs.append(ProcessSpec("rosdomofon", argv, gated=False))
    if plan.embedded("bitrix24"):
        # Long-lived install tokens, so a demo stack never depends on refreshing them (the token server
        # is the simulator, passed as BITRIX24_SERVER_ENDPOINT).
        argv = [
            rdb24,
            "sandbox",
            "bitrix24",
            "--port",
            str(plan.ports["bitrix24"]),
            "--access-ttl",
            "2592000",
        ]
        specs.append(ProcessSpec("bitrix24", argv, gated=False))
    return specs


def make_plan(inputs: StackInputs, accounts: int = 20, seed: int = 42) -> StackPlan:
    """Everything but the Redis URL (an embedded Valkey or a claimed DB), which the runner fills in."""
    sources = resolve_sources(inputs)
    taken: set[int] = set()
    ports = {
        name: pick_port(name, inputs.free_ports, taken)
        for name in ("webhook", "flower", "metrics", "ingest_metrics")
    }
    stand_ins = {"valkey": "redis", "tansu": "kafka", "rosdomofon": "rosdomofon", "bitrix24": "bitrix24"}
    for name, dependency in stand_ins.items():
        if sources[dependency] == Source.EMBEDDED:
            ports[name] = pick_port(name, inputs.free_ports, taken)
    company = inputs.company or DEMO_COMPANY
    env = {
        "COMPANY_SHORT_NAME": company,
        "PYTHONUNBUFFERED": "1",
        "FLOWER_PORT": str(ports["flower"]),
        "METRICS_PORT": str(ports["metrics"]),
        "INGEST_METRICS_PORT": str(ports["ingest_metrics"]),
        "WEBHOOK_HOST": LOCAL,
        "WEBHOOK_PORT": str(ports["webhook"]),
    }
    kafka_bootstrap = inputs.kafka_bootstrap
    if sources["kafka"] == Source.EMBEDDED:
        kafka_bootstrap = f"{LOCAL}:{ports['tansu']}"
        # A plain local broker: no SASL even when .env holds RosDomofon's broker credentials.
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "KAFKA_USERNAME": "",
            "KAFKA_PASSWORD": "",
            "KAFKA_SECURITY_PROTOCOL": "auto",
            "KAFKA_GROUP_ID": "",
        }
    if sources["bitrix24"] == Source.EMBEDDED:
        # The simulator runs here, so it can reach our receiver on the loopback address.
        env["WEBHOOK_PUBLIC_URL"] = f"http://{LOCAL}:{ports['webhook']}"
    if not inputs.flower_password_set:
        env["FLOWER_PASSWORD"] = secrets.token_urlsafe(12)
    plan = StackPlan(sources=sources, ports=ports, env=env, company=company, flower_user=inputs.flower_user)
    plan.processes = simulator_processes(plan, kafka_bootstrap, accounts, seed) + product_processes(ports)
    return plan
