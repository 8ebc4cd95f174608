"""``Bitrix24Simulator``: the portal in a background thread (uvicorn), with in-process state access."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from typing import Any

import uvicorn

from sandbox.bitrix24 import events, oauth
from sandbox.bitrix24.app import build_app
from sandbox.bitrix24.dispatch import Dispatcher
from sandbox.bitrix24.faults import Fault, Faults
from sandbox.bitrix24.limits import LeakyBucket, OperatingTime
from sandbox.bitrix24.oauth import OAuthCredentials
from sandbox.bitrix24.state import OAuthApp, OAuthState, Portal


class Bitrix24Simulator:
    """A Bitrix24 cloud portal on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        rate: float = 2.0,
        burst: int = 50,
        rate_limit: bool = True,
        operation_time_limit: float = 480.0,
        host: str = "127.0.0.1",
        port: int = 0,
        access_ttl: float = 3600.0,
    ) -> None:
        self.host = host
        self._sock = socket.socket(
            socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
        )  # asyncio sets TCP_NODELAY only then
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port = int(self._sock.getsockname()[1])
        app = OAuthApp(
            client_id=f"local.{secrets.token_hex(7)}.{secrets.randbelow(10**8):08d}",
            client_secret=secrets.token_urlsafe(30),
            application_token=secrets.token_hex(16),
            member_id=secrets.token_hex(16),
        )
        self.portal = Portal(
            domain=self.host_port,
            webhook_user=1,
            webhook_secret=secrets.token_hex(8),
            oauth=OAuthState(app=app, access_ttl=access_ttl),
        )
        access, refresh, _ = self.portal.oauth.issue()  # the pair handed over at install time
        self._install = (access, refresh)
        self.bucket = LeakyBucket(rate, burst, enabled=rate_limit)
        self.operating = OperatingTime(operation_time_limit)
        self.dispatcher = Dispatcher(self.portal, self.operating)
        self.faults = Faults()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- addresses and credentials -----------------------------------------------------------------
    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/rest/{self.portal.webhook_user}/{self.portal.webhook_secret}/"

    @property
    def oauth(self) -> OAuthCredentials:
        app = self.portal.oauth.app
        return OAuthCredentials(
            client_id=app.client_id,
            client_secret=app.client_secret,
            client_endpoint=f"{self.url}/rest/",
            server_endpoint=f"{self.url}/rest/",
            token_url=f"{self.url}/oauth/token/",
            authorize_url=f"{self.url}/oauth/authorize/",
            access_token=self._install[0],
            refresh_token=self._install[1],
            application_token=app.application_token,
            member_id=app.member_id,
        )

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> Bitrix24Simulator:
        config = uvicorn.Config(
            build_app(self), log_level="warning", lifespan="off", access_log=False, timeout_keep_alive=30
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="bitrix24-sim", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Bitrix24 simulator did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> Bitrix24Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control (also served under /_sandbox) ------------------------------------------------------
    def reset(self) -> None:
        """Forget records, calls, faults and limit state; credentials and tokens stay valid."""
        self.portal.reset()
        self.faults.clear()
        self.bucket.reset()
        self.operating.reset()
        self.dispatcher.extra_cost.clear()

    def inject(self, kind: str, **spec: Any) -> Fault:
        """Add a fault (see :mod:`sandbox.bitrix24.faults`); ``operating`` adds seconds to a method."""
        if kind == "operating":
            method = str(spec["method"])
            self.operating.add(
                f"app:{self.portal.oauth.app.client_id}", method, float(spec.get("seconds", 0))
            )
            self.operating.add(f"webhook:{self.portal.webhook_user}", method, float(spec.get("seconds", 0)))
            return Fault(kind=kind, method=method, seconds=float(spec.get("seconds", 0)))
        if kind == "refuse_element":
            with self.portal.lock:
                self.portal.refused_texts[str(spec["match"])] = int(spec.get("count", 1))
            return Fault(kind=kind, count=int(spec.get("count", 1)), description=str(spec["match"]))
        return self.faults.add(Fault(kind=kind, **spec))

    def configure(self, **settings: Any) -> None:
        """Change limits at run time: rate, burst, rate_limit, operation_time_limit, access_ttl."""
        if "rate" in settings:
            self.bucket.rate = float(settings["rate"])
        if "burst" in settings:
            self.bucket.burst = int(settings["burst"])
        if "rate_limit" in settings:
            self.bucket.enabled = bool(settings["rate_limit"])
        if "operation_time_limit" in settings:
            self.operating.limit = float(settings["operation_time_limit"])
        if "access_ttl" in settings:
            self.portal.oauth.access_ttl = float(settings["access_ttl"])
        self.bucket.reset()

    def settings(self) -> dict[str, Any]:
        return {
            "rate": self.bucket.rate,
            "burst": self.bucket.burst,
            "rate_limit": self.bucket.enabled,
            "operation_time_limit": self.operating.limit,
            "access_ttl": self.portal.oauth.access_ttl,
        }

    def issue_tokens(self) -> tuple[str, str]:
        """A fresh (access, refresh) pair for the app, as a re-install would hand over."""
        with self.portal.lock:
            access, refresh, _ = self.portal.oauth.issue()
        return access, refresh

    def expire_access_tokens(self) -> int:
        return oauth.expire_access_tokens(self.portal)

    def operator_reply(self, text: str, **target: Any) -> dict[str, Any]:
        """An operator answers in an Open Lines chat (``chat_id`` or ``external_chat_id``)."""
        return events.operator_reply(self.portal, self.url, text=text, **target)

    def chats(self) -> list[dict[str, Any]]:
        with self.portal.lock:
            return [
                {
                    **{k: v for k, v in chat.items() if k != "messages"},
                    "messages": [dict(m) for m in chat["messages"]],
                }
                for chat in self.portal.chats.values()
            ]

    def openlines(self) -> dict[str, Any]:
        """Connectors, activations and, per external chat id, the messages an operator sees."""
        with self.portal.lock:
            chats = {
                f"{conn}|{line}|{ext}": {
                    "connector": conn,
                    "line": line,
                    "external_chat_id": ext,
                    "chat_id": cid,
                    "messages": [dict(m) for m in self.portal.chats[cid]["messages"]],
                }
                for (conn, line, ext), cid in self.portal.external_chats.items()
            }
            return {
                "connectors": {
                    k: {"ID": v["ID"], "NAME": v.get("NAME")} for k, v in self.portal.connectors.items()
                },
                "active": [
                    {"connector": c, "line": line, "active": a} for (c, line), a in self.portal.active.items()
                ],
                "data": [
                    {"connector": c, "line": line, "data": d}
                    for (c, line), d in self.portal.connector_data.items()
                ],
                "lines": list(self.portal.lines.values()),
                "handlers": list(self.portal.handlers),
                "chats": chats,
            }
