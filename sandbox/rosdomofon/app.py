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

from sandbox.rosdomofon.context import SimContext
from sandbox.rosdomofon.control import build_control_router
from sandbox.rosdomofon.faults import Call
from sandbox.rosdomofon.operator_api import build_operator_router


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
    app.include_router(build_operator_router(ctx))
    app.include_router(build_control_router(ctx))

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

    @app.middleware("http")
    async def faults_and_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path.startswith("/_sandbox"):
            return await call_next(request)
        decision = ctx.faults.draw(path)
        if decision.latency:
            await asyncio.sleep(decision.latency)
        if decision.status is None:
            response = await call_next(request)
        else:
            response = _fault_response(request, decision.status, decision.retry_after)
        ctx.calls.add(Call(request.method, path, endpoint_of(request), response.status_code, time.time(),
                           fault=decision.status is not None))  # fmt: skip
        return response

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
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse(_spring_error(400, message, request.url.path), status_code=400)

    return app


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
