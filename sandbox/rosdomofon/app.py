"""The ASGI app: operator routes + control routes, with the call log and faults wrapped around them."""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.rosdomofon.context import SimContext
from sandbox.rosdomofon.faults import Call
from sandbox.rosdomofon.routes import control, operator
from schemas.validation import format_validation_errors


def _spring_error(status: int, message: str, path: str) -> dict[str, Any]:
    return {
        "timestamp": email.utils.formatdate(usegmt=True),
        "status": status,
        "error": {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                  503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Error"),
        "message": message,
        "path": path,
    }  # fmt: skip


def create_app(ctx: SimContext) -> FastAPI:
    app = FastAPI(title="RosDomofon sandbox", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json")
    app.state.sim = ctx  # what every handler takes as ``Sim`` (sandbox.rosdomofon.context)
    app.include_router(operator.router)
    app.include_router(control.router)

    templates: list[tuple[str, str, re.Pattern[str]]] = []

    def endpoint_of(request: Request) -> str:
        """``METHOD /route/template`` so counts group calls that differ only in ids."""
        if not templates:
            for path, methods in app.openapi()["paths"].items():
                pattern = re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path)) + "$")
                templates.extend((m.upper(), path, pattern) for m in methods)
        for method, path, pattern in templates:
            if method == request.method and pattern.match(request.url.path):
                return f"{method} {path}"
        return f"{request.method} {request.url.path}"

    async def faults_and_log(scope: Scope, receive: Receive, send: Send, inner: ASGIApp) -> None:
        """Draw faults and log the call around every operator request.

        A pure ASGI wrapper rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware
        re-streams each response, which costs ~45 ms per call on loopback (headers and body leave in
        separate writes and meet the client's delayed ACK).
        """
        path = scope["path"]
        if scope["type"] != "http" or path.startswith("/_sandbox"):
            await inner(scope, receive, send)
            return
        request = Request(scope, receive)
        decision = ctx.faults.draw(path)
        if decision.latency:
            await asyncio.sleep(decision.latency)

        def log(status: int) -> None:
            # Logged before the response leaves, so a client that reads the log right after the
            # response always sees its own call.
            ctx.calls.add(Call(request.method, path, endpoint_of(request), status, time.time(),
                               fault=decision.status is not None))  # fmt: skip

        if decision.status is None:

            async def send_and_log(message: Message) -> None:
                if message["type"] == "http.response.start":
                    log(message["status"])
                await send(message)

            await inner(scope, receive, send_and_log)
        elif decision.after_commit:

            async def swallow(message: Message) -> None:
                return None

            await inner(scope, receive, swallow)  # the change happens; its answer never leaves
            response = _fault_response(request, decision.status, decision.retry_after)
            log(response.status_code)
            await response(scope, receive, send)
        else:
            response = _fault_response(request, decision.status, decision.retry_after)
            log(response.status_code)
            await response(scope, receive, send)

    app.add_middleware(_Wrap, handler=faults_and_log)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        if isinstance(detail, dict) and "message" in detail:
            body: Any = {**_spring_error(exc.status_code, detail["message"], request.url.path), **detail}
        elif isinstance(detail, dict):
            body = detail
        else:
            body = _spring_error(exc.status_code, str(detail), request.url.path)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Path parameters of the wrong type (e.g. /accounts/abc): Spring answers 400.
        message = format_validation_errors(exc.errors(), root="request")
        return JSONResponse(_spring_error(400, message, request.url.path), status_code=400)

    return app


class _Wrap:
    """Adapts a ``handler(scope, receive, send, inner)`` coroutine into ASGI middleware."""

    def __init__(
        self, app: ASGIApp, handler: Callable[[Scope, Receive, Send, ASGIApp], Awaitable[None]]
    ) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send, self.app)


def _fault_response(request: Request, status: int, retry_after: str | None) -> Response:
    if status == 401:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        body = {"error": "invalid_token", "error_description": f"Invalid access token: {token}"}
        return JSONResponse(
            body, status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    message = "Too Many Requests" if status == 429 else "injected fault"
    return JSONResponse(_spring_error(status, message, request.url.path), status_code=status, headers=headers)


__all__ = ["create_app"]
