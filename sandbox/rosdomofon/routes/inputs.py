"""Reading request bodies and paging the way the facts say the server does (docs/rosdomofon-api.md).

Wrong types answer 400 (Spring's "JSON parse error"); well-typed but unusable values are each route's
own 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from sandbox.rosdomofon.context import api_error

V1 = "/abonents-service/api/v1"


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise api_error(400, "JSON parse error: request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise api_error(400, "JSON parse error: expected an object")
    return body


def page_params(request: Request) -> tuple[int, int]:
    try:
        page = int(request.query_params.get("page", 0))
        size = int(request.query_params.get("size", 20))
    except ValueError:
        raise api_error(400, "page and size must be integers") from None
    if page < 0 or size < 1:
        raise api_error(400, "page must be >= 0 and size >= 1")
    return page, min(size, 1000)


def typed(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise api_error(400, f"{name} is required")
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise api_error(400, f"JSON parse error: {name} has the wrong type")
    if not isinstance(value, kind):
        raise api_error(400, f"JSON parse error: {name} has the wrong type ({type(value).__name__})")
    return value


__all__ = ["V1", "json_object", "page_params", "typed"]
