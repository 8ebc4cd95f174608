"""HTTP surface of the simulator: the REST endpoints, the OAuth server and the ``/_sandbox`` control API."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.bitrix24 import events, oauth
from sandbox.bitrix24.crm import MULTI
from sandbox.bitrix24.dispatch import time_block
from sandbox.bitrix24.faults import Fault
from sandbox.bitrix24.forms import unflatten
from sandbox.bitrix24.state import ApiError, Context, ListResult

if TYPE_CHECKING:
    from sandbox.bitrix24.server import Bitrix24Simulator


def _error(exc: ApiError, extra: dict | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": exc.code, "error_description": exc.description, **(extra or {})}, exc.status
    )


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


def build_app(sim: Bitrix24Simulator) -> Starlette:
    portal = sim.portal

    def context(path: str, params: dict[str, Any], source: str) -> tuple[str, Context]:
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

    async def rest(request: Request) -> Response:
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
            method, ctx = context(path, params, source)
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
            return _error(exc)

    async def authorize(request: Request) -> Response:
        query = dict(request.query_params)
        try:
            code = oauth.authorize(portal, query.get("client_id", ""))
        except ApiError as exc:
            return _error(exc)
        answer = {
            "code": code,
            "domain": portal.domain,
            "member_id": portal.oauth.app.member_id,
            "scope": portal.oauth.app.scope,
            "server_domain": sim.host_port,
            "state": query.get("state", ""),
        }
        redirect = query.get("redirect_uri") or portal.oauth.app.redirect_uri
        if redirect:
            return RedirectResponse(f"{redirect}?{urlencode(answer)}", 302)
        return JSONResponse(answer)

    async def token(request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            params.update(dict(parse_qsl((await request.body()).decode(), keep_blank_values=True)))
        try:
            return JSONResponse(oauth.exchange(portal, params, sim.url))
        except ApiError as exc:
            return _error(exc)

    # --- control API -------------------------------------------------------------------------------
    async def contacts(request: Request) -> Response:
        with portal.lock:
            rows = [
                {k: ([dict(r) for r in v] if k in MULTI else v) for k, v in c.items()}
                for c in portal.contacts.values()
            ]
        return JSONResponse(rows)

    async def contact(request: Request) -> Response:
        with portal.lock:
            record = portal.contacts.get(int(request.path_params["id"]))
            if record is None:
                return JSONResponse({"error": "not found"}, 404)
            return JSONResponse({k: ([dict(r) for r in v] if k in MULTI else v) for k, v in record.items()})

    async def chats(request: Request) -> Response:
        return JSONResponse(sim.chats())

    async def openlines(request: Request) -> Response:
        return JSONResponse(sim.openlines())

    async def calls(request: Request) -> Response:
        with portal.lock:
            log = list(portal.calls)
        return JSONResponse({"calls": log, **portal.summary()})

    async def reset(request: Request) -> Response:
        sim.reset()
        return JSONResponse({"ok": True})

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            sim.faults.clear()
            return JSONResponse({"ok": True})
        if request.method == "GET":
            return JSONResponse(sim.faults.listing())
        spec = await request.json()
        try:
            fault = sim.inject(**spec)
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(fault.as_dict())

    async def settings(request: Request) -> Response:
        if request.method == "POST":
            sim.configure(**(await request.json()))
        return JSONResponse(sim.settings())

    async def reply(request: Request) -> Response:
        spec = await request.json()
        try:
            outcome = await asyncio.to_thread(events.operator_reply, portal, sim.url, **spec)
        except ApiError as exc:
            return _error(exc)
        except TypeError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(outcome)

    async def expire(request: Request) -> Response:
        return JSONResponse({"expired": oauth.expire_access_tokens(portal)})

    async def credentials(request: Request) -> Response:
        return JSONResponse({"webhook_url": sim.webhook_url, "oauth": sim.oauth.as_dict()})

    routes = [
        Route("/rest/{path:path}", rest, methods=["GET", "POST"]),
        Route("/oauth/authorize/", authorize, methods=["GET"]),
        Route("/oauth/token/", token, methods=["GET", "POST"]),
        Route("/_sandbox/contacts", contacts, methods=["GET"]),
        Route("/_sandbox/contacts/{id:int}", contact, methods=["GET"]),
        Route("/_sandbox/chats", chats, methods=["GET"]),
        Route("/_sandbox/openlines", openlines, methods=["GET"]),
        Route("/_sandbox/calls", calls, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/settings", settings, methods=["GET", "POST"]),
        Route("/_sandbox/operator/reply", reply, methods=["POST"]),
        Route("/_sandbox/oauth/expire", expire, methods=["POST"]),
        Route("/_sandbox/credentials", credentials, methods=["GET"]),
    ]
    return Starlette(routes=routes)


__all__ = ["Fault", "build_app"]
