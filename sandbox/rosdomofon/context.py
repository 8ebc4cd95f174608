"""What the routes share: the world, credentials, tokens, faults, call log and the Kafka stand-in.

The app keeps the :class:`SimContext` on ``app.state.sim``; a handler takes it as a ``Sim`` parameter.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request

from sandbox.rosdomofon.faults import CallLog, Faults
from sandbox.rosdomofon.state import World
from sandbox.rosdomofon.tokens import TokenStore

if TYPE_CHECKING:
    from sandbox.rosdomofon.kafka_side import SubscriberApp


@dataclass
class SimContext:
    world: World
    username: str
    password: str
    company_short_name: str
    tokens: TokenStore
    faults: Faults
    calls: CallLog = field(default_factory=CallLog)
    kafka: SubscriberApp | None = None
    flaky_abonent_flats: bool = True
    abonent_flats_calls: itertools.count = field(default_factory=itertools.count)

    @property
    def company_id(self) -> int:
        return next(c.id for c in self.world.companies.values() if c.short_name == self.company_short_name)


def api_error(status: int, message: str) -> HTTPException:
    """An error answered in Spring's shape (the real error body shape is unknown)."""
    reasons = {400: "Bad Request", 404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity"}
    return HTTPException(
        status_code=status, detail={"error": reasons.get(status, "Error"), "message": message}
    )


async def sim_context(request: Request) -> SimContext:
    """Async so FastAPI does not hop to a worker thread just to read an attribute."""
    return request.app.state.sim


Sim = Annotated[SimContext, Depends(sim_context)]


__all__ = ["Sim", "SimContext", "api_error", "sim_context"]
