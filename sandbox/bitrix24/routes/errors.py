"""The portal's error body: ``{"error": CODE, "error_description": text}`` with the error's HTTP status."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import Request

from sandbox.bitrix24.state import ApiError


def error_response(exc: ApiError, extra: dict[str, Any] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": exc.code, "error_description": exc.description, **(extra or {})}, exc.status
    )


async def plain_http_error(request: Request, exc: HTTPException) -> Response:
    """A path or method no route serves answers in plain text, as it did before the app was FastAPI
    (FastAPI's default is ``{"detail": ...}`` JSON, which no Bitrix24 portal sends)."""
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


__all__ = ["error_response", "plain_http_error"]
