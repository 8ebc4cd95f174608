"""``/rest/...``: every REST method, by webhook (``/rest/<user>/<secret>/<method>``) or OAuth
(``/rest/<method>`` with ``auth``), through the storm, leaky bucket and injected faults in that order."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from sandbox.bitrix24 import oauth
from sandbox.bitrix24.dispatch import time_block
from sandbox.bitrix24.forms import unflatten
from sandbox.bitrix24.routes.errors import error_response
from sandbox.bitrix24.routes.host import Sim
from sandbox.bitrix24.state import ApiError, Context, ListResult, Portal

router = APIRouter()


async def _params(request: Request) -> dict[str, Any]:
    pairs = list(parse_qsl(request.url.query, keep_blank_values=True))
    body = await request.body()
    ctype = request.headers.get("content-type", "")
    if body and "json" in ctype:
        try:
            data = json.loads(body)
        except ValueError:
            raise ApiError("INVALID_REQUEST", "Request body is not valid JSON") from None
        merged = unflatten(pairs)
        if isinstance(data, dict):
            merged.update(data)
        return merged
    if body:
        pairs.extend(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return unflatten(pairs)


def _method_and_context(
    portal: Portal, path: str, params: dict[str, Any], source: str
) -> tuple[str, Context]:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0].isdigit():
        if int(parts[0]) != portal.webhook_user or parts[1] != portal.webhook_secret:
            raise ApiError("NO_AUTH_FOUND", "Wrong authorization data", 401)
        ctx = Context(identity=f"webhook:{parts[0]}", oauth=False, user_id=int(parts[0]), source=source)
        method = "/".join(parts[2:])
    elif len(parts) == 1:
        method = parts[0]
        ctx = oauth.authenticate(portal, params.pop("auth", None), source)
    else:
        raise ApiError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    return method.lower().removesuffix(".json").removesuffix(".xml"), ctx


@router.api_route("/rest/{path:path}", methods=["GET", "HEAD", "POST"])
async def rest(request: Request, sim: Sim) -> Response:
    portal = sim.portal
    path = request.path_params["path"]
    method_hint = path.rsplit("/", 1)[-1].lower().removesuffix(".json")
    ctx: Context | None = None
    try:
        if sim.faults.take("storm", method_hint) is not None:
            raise ApiError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)
        source = request.client.host if request.client else "?"
        if not sim.bucket.admit(source):
            raise ApiError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503)
        moved = sim.faults.take("redirect", method_hint)
        if moved is not None:
            target = f"{moved.location.rstrip('/')}{request.url.path}"
            return RedirectResponse(target + (f"?{request.url.query}" if request.url.query else ""), 302)
        params = await _params(request)
        method, ctx = _method_and_context(portal, path, params, source)
        latency = sim.faults.take("latency", method)
        if latency is not None:
            await asyncio.sleep(latency.seconds)
        injected = sim.faults.take("error", method)
        if injected is not None:
            raise ApiError(injected.code, injected.description, injected.status)
        result: Any
        block: dict[str, Any] | None
        extra: dict[str, Any] = {}
        if method == "batch":
            result, block = sim.dispatcher.batch(params, ctx), None
        else:
            result, block = sim.dispatcher.run(method, params, ctx)
        if isinstance(result, ListResult):
            extra = {"total": result.total} | ({"next": result.next} if result.next is not None else {})
            result = result.rows
        portal.log_call(method, 200, "", ctx, host=request.headers.get("host"))
        if block is None:
            now = time.time()
            block = time_block(now, now)
        slow = sim.faults.take("commit_then_timeout", method)
        if slow is not None:
            await asyncio.sleep(slow.seconds)  # committed; the caller times out first
        return JSONResponse({"result": result, **extra, "time": block})
    except ApiError as exc:
        portal.log_call(method_hint, exc.status, exc.code, ctx)
        return error_response(exc)


__all__ = ["router"]
