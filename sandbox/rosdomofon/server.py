"""``RosDomofonSimulator``: the app served by uvicorn in a background thread, plus in-process access.

Tests reach the state directly (``sim.world``, ``sim.calls``, ``sim.faults``, ``sim.tokens``,
``sim.kafka``) and through HTTP (``sim.url`` + ``/_sandbox/...``); both see the same objects.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from sandbox.rosdomofon.app import create_app
from sandbox.rosdomofon.context import SimContext
from sandbox.rosdomofon.faults import CallLog, Faults
from sandbox.rosdomofon.generator import generate
from sandbox.rosdomofon.kafka_side import SubscriberApp
from sandbox.rosdomofon.state import World
from sandbox.rosdomofon.tokens import TokenStore


class RosDomofonSimulator:
    def __init__(
        self,
        accounts: int = 20,
        seed: int = 1,
        company: str = "SK_SB",
        kafka_bootstrap: str | None = None,
        token_lifetime: float = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "operator@sandbox.local",
        password: str | None = None,
        flaky_abonent_flats: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.world = generate(World(), accounts=accounts, seed=seed, company=company)
        self.ctx = SimContext(
            world=self.world,
            username=username,
            password=password or f"sandbox-{seed}",
            company_short_name=company,
            tokens=TokenStore(token_lifetime),
            faults=Faults(seed),
            flaky_abonent_flats=flaky_abonent_flats,
        )
        if kafka_bootstrap:
            self.ctx.kafka = SubscriberApp(kafka_bootstrap, company, self.world)
        self.app = create_app(self.ctx)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- handy views of the context ----------------------------------------------------------

    username = property(lambda self: self.ctx.username)
    password = property(lambda self: self.ctx.password)
    company = property(lambda self: self.ctx.company_short_name)
    calls: CallLog = property(lambda self: self.ctx.calls)  # type: ignore[assignment]
    faults: Faults = property(lambda self: self.ctx.faults)  # type: ignore[assignment]
    tokens: TokenStore = property(lambda self: self.ctx.tokens)  # type: ignore[assignment]
    kafka: SubscriberApp | None = property(lambda self: self.ctx.kafka)  # type: ignore[assignment]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> RosDomofonSimulator:
        """Bind (a free port when ``port=0``), serve in a thread, return once it answers."""
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
        # without it every response waits ~40 ms for the client's delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="rosdomofon-sim", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"RosDomofon simulator did not start on {self.url}")
            time.sleep(0.02)
        if self.ctx.kafka is not None:
            self.ctx.kafka.start(timeout)
        return self

    def stop(self) -> None:
        if self.ctx.kafka is not None:
            self.ctx.kafka.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> RosDomofonSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- shortcuts for tests -----------------------------------------------------------------

    def send_from_subscriber(
        self, abonent_id: int, text: str, channel: str = "support", image_url: str | None = None
    ) -> dict[str, Any]:
        if self.ctx.kafka is None:
            raise RuntimeError("the simulator was started without a Kafka bootstrap")
        return self.ctx.kafka.send_from_subscriber(abonent_id, text, channel, image_url)

    def expire_tokens(self) -> int:
        return self.ctx.tokens.expire_all()

    def history(self, abonent_id: int, channel: str | None = None) -> list[Any]:
        with self.world.lock:
            return self.world.history(abonent_id, channel)


__all__ = ["RosDomofonSimulator"]
