"""What the routes need from the simulator that serves them, and how a handler reaches it.

The routes depend on this Protocol rather than on :class:`sandbox.bitrix24.server.Bitrix24Simulator`,
so the server may build the app without the app importing the server back (no import cycle, not even
for type checking). The simulator puts itself on ``app.state.sim``; each handler takes it as a ``Sim``
parameter.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from sandbox.bitrix24.dispatch import Dispatcher
from sandbox.bitrix24.faults import Fault, Faults
from sandbox.bitrix24.limits import LeakyBucket
from sandbox.bitrix24.oauth import OAuthCredentials
from sandbox.bitrix24.state import Portal


class SimulatorHost(Protocol):
    portal: Portal
    faults: Faults
    bucket: LeakyBucket
    dispatcher: Dispatcher

    @property
    def host_port(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def webhook_url(self) -> str: ...

    @property
    def oauth(self) -> OAuthCredentials: ...

    def reset(self) -> None: ...

    def inject(self, kind: str, **spec: Any) -> Fault: ...

    def configure(self, **settings: Any) -> None: ...

    def settings(self) -> dict[str, Any]: ...

    def chats(self) -> list[dict[str, Any]]: ...

    def openlines(self) -> dict[str, Any]: ...

    def install_app(self, handler: str) -> dict[str, Any]: ...

    def uninstall_app(self, clean: bool = False) -> dict[str, Any]: ...


async def simulator_of(request: Request) -> SimulatorHost:
    """Async so FastAPI does not hop to a worker thread just to read an attribute."""
    return request.app.state.sim


Sim = Annotated[SimulatorHost, Depends(simulator_of)]


__all__ = ["Sim", "SimulatorHost", "simulator_of"]
