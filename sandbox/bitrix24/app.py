"""The simulator's ASGI app: the REST endpoints, the OAuth server and the ``/_sandbox`` control API.

FastAPI, like the RosDomofon simulator, but nothing of FastAPI shows on the wire: no generated docs
(a portal has none) and unmatched paths or methods answer in Starlette's plain text, as before.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.exceptions import HTTPException

from sandbox.bitrix24.routes import authorization, control, rest
from sandbox.bitrix24.routes.errors import plain_http_error
from sandbox.bitrix24.routes.host import SimulatorHost


def build_app(sim: SimulatorHost) -> FastAPI:
    app = FastAPI(title="Bitrix24 sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sim = sim
    app.include_router(rest.router)
    app.include_router(authorization.router)
    app.include_router(control.router)
    app.add_exception_handler(HTTPException, plain_http_error)  # type: ignore[arg-type]
    return app


__all__ = ["build_app"]
