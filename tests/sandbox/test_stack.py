"""``rdb24 up`` end to end: from nothing to a healthy stack, a demo round trip, status, clean stop.

The demo starts while the stack is still starting (it waits, as ``rdb24 status --wait`` does); a
``kill -9`` of the runner and a closed terminal (SIGHUP) must leave no process behind either.

The stack runs as a real subprocess in its own process group with every stand-in embedded on free
ports (``--embedded --free-ports``), from an empty working directory, so nothing configured on this
machine is touched. Process checks use the pids in the stack's state file plus every descendant seen
while it ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import redis
import requests

RDB24 = str(Path(sys.executable).with_name("rdb24"))
READY_WITHIN = 180.0  # seconds from `rdb24 up` to every service healthy (2 busy cores, cold imports)
STOP_WITHIN = 45.0  # Ctrl-C to no process left: honcho's grace (15 s) plus Celery's warm shutdown
pytestmark = pytest.mark.process  # `rdb24 up` and its whole process tree


@dataclass
class Stack:
    process: subprocess.Popen
    run_dir: Path
    log: Path

    def state(self) -> dict | None:
        try:
            return json.loads((self.run_dir / "stack.json").read_text())
        except (OSError, ValueError):
            return None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        """The runner, everything it started (own sessions included) and their children."""
        state = self.state() or {}
        found: dict[int, psutil.Process] = {}
        roots = [self.process.pid, *state.get("pids", {}).values()]
        for pid in roots:
            try:
                proc = psutil.Process(pid)
                found[pid] = proc
                found.update({child.pid: child for child in proc.children(recursive=True)})
            except psutil.NoSuchProcess:
                continue
        return list(found.values())

    def kill_everything(self) -> None:
        for proc in self.processes():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


def start_stack(tmp_path: Path) -> Stack:
    run_dir = tmp_path / "var"
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [RDB24, "up", "--embedded", "--free-ports", "--run-dir", str(run_dir),
             "--health-timeout", str(READY_WITHIN), "--accounts", "10"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    return Stack(process=process, run_dir=run_dir, log=log)


def wait_ready(stack: Stack) -> dict:
    deadline = time.monotonic() + READY_WITHIN + 20
    while time.monotonic() < deadline:
        state = stack.state()
        if state and state.get("ready"):
            return state
        if stack.process.poll() is not None:
            pytest.fail(
                f"rdb24 up exited with {stack.process.returncode} before ready:\n{stack.output()[-4000:]}"
            )
        time.sleep(0.5)
    pytest.fail(f"rdb24 up not ready within {READY_WITHIN + 20:g}s:\n{stack.output()[-4000:]}")


def assert_all_gone(stack: Stack, processes: list[psutil.Process], within: float = STOP_WITHIN) -> None:
    deadline = time.monotonic() + within
    alive = processes
    while time.monotonic() < deadline:
        alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive and stack.process.poll() is not None:
            return
        time.sleep(0.3)
    names = [(p.pid, " ".join(p.cmdline()[:4])) for p in alive if p.is_running()]
    pytest.fail(f"still running {within:g}s after the stop: {names}\n{stack.output()[-3000:]}")


def run_cli(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RDB24, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("stack"))
    try:
        yield running
    finally:
        running.kill_everything()


@pytest.mark.timeout(480)
def test_demo_round_trip_waits_for_a_starting_stack(stack: Stack) -> None:
    state = stack.state()
    assert state is None or not state["ready"], "the first test runs while the stack is starting"
    result = run_cli("demo", "--run-dir", str(stack.run_dir), "--subscribers", "2", "--timeout", "90",
                     "--wait", str(READY_WITHIN + 20), cwd=stack.run_dir.parent,
                     timeout=READY_WITHIN + 240)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr + stack.output()[-3000:]
    assert "waiting up to" in result.stderr, result.stderr  # it did find the stack still starting
    out = result.stdout
    assert "What the operator sees in Bitrix24" in out
    assert out.count("Hello! The intercom") >= 2, out  # two subscribers' messages, shown from Bitrix24
    assert "event deliveries" in out and "'status': 200" in out, out  # the portal reached our receiver
    assert "RosDomofon history" in out and "a technician is on the way" in out
    # Both attachments: the subscriber's photo in the operator's chat, the operator's file at the app.
    assert "with a photo of the intercom" in out and re.search(r"📎 intercom-\w+\.png <http", out), out
    assert re.search(r"📎 instructions-\w+\.pdf \([\d.]+ КБ\): https://", out), out
    assert "round trip complete" in out
    # The subscriber's history, read independently through the simulator's control API.
    state = wait_ready(stack)
    subscribers = requests.get(state["urls"]["rosdomofon"] + "/_sandbox/subscribers", timeout=5).json()
    histories = [
        requests.get(
            f"{state['urls']['rosdomofon']}/_sandbox/subscribers/{s['abonentId']}/messages", timeout=5
        ).json()
        for s in subscribers
    ]
    replies = [m for h in histories for m in h if not m["incoming"] and "technician" in m["message"]]
    assert len(replies) == 1, replies  # delivered once, not twice


@pytest.mark.timeout(300)
def test_up_starts_every_service_from_nothing(stack: Stack) -> None:
    state = wait_ready(stack)
    urls, env = state["urls"], state["env"]
    assert requests.get(urls["webhook"] + "/health", timeout=5).status_code == 200
    flower = requests.get(urls["flower"] + "/api/workers", auth=("admin", env["FLOWER_PASSWORD"]), timeout=10)
    assert flower.status_code == 200
    assert requests.get(urls["flower"] + "/api/workers", timeout=10).status_code == 401, (
        "Flower must need a login"
    )
    assert (
        requests.get(urls["rosdomofon"] + "/_sandbox/info", timeout=5).json()["company"]
        == env["COMPANY_SHORT_NAME"]
    )
    assert requests.get(urls["bitrix24"] + "/_sandbox/credentials", timeout=5).status_code == 200
    expected = {"valkey", "tansu", "rosdomofon", "bitrix24", "worker_flows", "worker_api", "beat", "ingest",
                "webhook", "flower"}  # fmt: skip
    assert expected <= set(state["pids"])
    assert all(psutil.pid_exists(pid) for pid in state["pids"].values())
    output = stack.output()
    for row in (
        "redis",
        "kafka",
        "rosdomofon",
        "bitrix24",
        "webhook receiver",
        "flower",
        env["FLOWER_PASSWORD"],
    ):
        assert row in output, f"start table lacks {row!r}"
    assert output.count("rosdomofon-bitrix24 stack") == 1, "exactly one start table"


@pytest.mark.timeout(120)
def test_status_prints_its_table(stack: Stack) -> None:
    wait_ready(stack)
    result = run_cli("status", "--run-dir", str(stack.run_dir), "--timeout", "3", cwd=stack.run_dir.parent)
    assert result.returncode == 0, result.stdout + result.stderr  # exit 0: healthy
    out = result.stdout
    assert "healthy (exit 0)" in out, out
    assert "local stack" in out
    for section in ("Workers", "Queues", "Ingest", "Dead letters", "Reconciliation", "rate limiter"):
        assert section in out, f"status lacks {section}:\n{out}"
    assert "worker_flows@" in out and "worker_api@" in out, out
    assert "unavailable" not in out, out
    document = json.loads(
        run_cli(
            "status", "--json", "--run-dir", str(stack.run_dir), "--timeout", "3", cwd=stack.run_dir.parent
        ).stdout
    )
    assert document["status"] == "healthy" and document["where"].startswith("local stack"), document
    for role in ("beat", "ingest"):
        probe = run_cli("status", "--run-dir", str(stack.run_dir), "--probe", role, cwd=stack.run_dir.parent)
        assert probe.returncode == 0, f"{role}: {probe.stdout}{probe.stderr}"


@pytest.mark.timeout(200)
def test_ctrl_c_leaves_no_process(stack: Stack) -> None:
    wait_ready(stack)
    processes = stack.processes()
    assert len(processes) >= 12  # runner, 2 stand-ins, 8 roles/simulators, worker pool children
    os.killpg(stack.process.pid, signal.SIGINT)
    assert_all_gone(stack, processes)
    assert stack.process.returncode == 0, stack.output()[-2000:]
    assert "stack stopped; no process left running" in stack.output()
    assert not (stack.run_dir / "stack.json").exists(), "the state file outlived the stack"


@pytest.mark.timeout(300)
def test_a_crashed_process_is_reported_loudly_and_stops_the_stack(tmp_path: Path) -> None:
    crashing = start_stack(tmp_path)
    try:
        state = wait_ready(crashing)
        processes = crashing.processes()
        os.kill(state["pids"]["webhook"], signal.SIGKILL)
        assert_all_gone(crashing, processes)
        assert crashing.process.returncode == 1
        output = crashing.output()
        assert "STACK FAILED" in output and "webhook exited with rc=-9" in output, output[-2000:]
    finally:
        crashing.kill_everything()


@pytest.mark.timeout(300)
def test_kill_9_of_up_takes_every_child_along(tmp_path: Path) -> None:
    killed = start_stack(tmp_path)
    try:
        wait_ready(killed)
        processes = killed.processes()
        assert len(processes) >= 12
        os.kill(killed.process.pid, signal.SIGKILL)  # the runner only: no handler, no finally runs
        assert_all_gone(killed, processes, within=15.0)
    finally:
        killed.kill_everything()


@pytest.mark.timeout(300)
def test_closing_the_terminal_stops_the_stack_cleanly(tmp_path: Path) -> None:
    hung_up = start_stack(tmp_path)
    try:
        wait_ready(hung_up)
        processes = hung_up.processes()
        os.kill(hung_up.process.pid, signal.SIGHUP)
        assert_all_gone(hung_up, processes)
        output = hung_up.output()
        assert hung_up.process.returncode == 0, output[-2000:]
        assert "SIGHUP received" in output and "stack stopped; no process left running" in output
        assert not (hung_up.run_dir / "stack.json").exists(), "the state file outlived the stack"
    finally:
        hung_up.kill_everything()


@pytest.mark.timeout(900)
def test_run_twice_in_the_same_folder_reaches_the_portal_both_times(
    tmp_path: Path, redis_server_url: str
) -> None:
    """``make run`` → ``rdb24 demo`` → Ctrl-C → ``make run`` → ``rdb24 demo`` (issue 13).

    The second run's embedded Kafka starts again at offset 0 while Redis (here one claimed database,
    as a local stack claims one) still holds the first run's effect markers: the second demo's
    messages must reach the portal all the same.
    """
    from sandbox.stack.redis_db import claim_database, release_database

    database = claim_database(redis_server_url)
    foreign = ("KAFKA_", "ROSDOMOFON_", "BITRIX24_", "REDIS_URL", "CELERY_", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(foreign)}
    env.update(REDIS_URL=database, COLUMNS="160")
    try:
        for run in (1, 2):
            log = tmp_path / f"up{run}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [RDB24, "up", "--free-ports", "--run-dir", str(tmp_path / "var"),
                     "--health-timeout", str(READY_WITHIN), "--accounts", "10"],
                    cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, env=env,
                )  # fmt: skip
            stack = Stack(process=process, run_dir=tmp_path / "var", log=log)
            try:
                wait_ready(stack)
                demo = subprocess.run(
                    [RDB24, "demo", "--run-dir", str(stack.run_dir), "--subscribers", "2", "--timeout", "90"],
                    cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env,
                )  # fmt: skip
                assert demo.returncode == 0, f"run {run}:\n{demo.stdout}{demo.stderr}{stack.output()[-3000:]}"
                assert "round trip complete" in demo.stdout, f"run {run}:\n{demo.stdout}"
                assert demo.stdout.count("Hello! The intercom") >= 2, f"run {run}:\n{demo.stdout}"
                processes = stack.processes()
                os.killpg(stack.process.pid, signal.SIGINT)
                assert_all_gone(stack, processes)
            finally:
                stack.kill_everything()
    finally:
        redis.Redis.from_url(database).flushdb()
        release_database(database)
