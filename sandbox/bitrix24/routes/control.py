"""The ``/_sandbox`` control API (no auth): read records and the call log, inject faults, change limits,
let an operator reply, expire tokens (the list is in :mod:`sandbox.bitrix24`)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sandbox.bitrix24 import events, oauth
from sandbox.bitrix24.crm import MULTI
from sandbox.bitrix24.routes.errors import error_response
from sandbox.bitrix24.routes.host import Sim
from sandbox.bitrix24.state import ApiError

router = APIRouter(prefix="/_sandbox")


def _record(contact: dict) -> dict:
    """A contact with its multifield rows copied, so the answer does not share the portal's lists."""
    return {k: ([dict(r) for r in v] if k in MULTI else v) for k, v in contact.items()}


@router.api_route("/contacts", methods=["GET", "HEAD"])
async def contacts(sim: Sim) -> Response:
    with sim.portal.lock:
        rows = [_record(c) for c in sim.portal.contacts.values()]
    return JSONResponse(rows)


@router.api_route("/contacts/{id:int}", methods=["GET", "HEAD"])
async def contact(request: Request, sim: Sim) -> Response:
    with sim.portal.lock:
        record = sim.portal.contacts.get(int(request.path_params["id"]))
        if record is None:
            return JSONResponse({"error": "not found"}, 404)
        return JSONResponse(_record(record))


@router.api_route("/chats", methods=["GET", "HEAD"])
async def chats(sim: Sim) -> Response:
    return JSONResponse(sim.chats())


@router.api_route("/openlines", methods=["GET", "HEAD"])
async def openlines(sim: Sim) -> Response:
    return JSONResponse(sim.openlines())


@router.api_route("/calls", methods=["GET", "HEAD"])
async def calls(sim: Sim) -> Response:
    with sim.portal.lock:
        log = list(sim.portal.calls)
    return JSONResponse({"calls": log, **sim.portal.summary()})


@router.post("/reset")
async def reset(sim: Sim) -> Response:
    sim.reset()
    return JSONResponse({"ok": True})


@router.api_route("/faults", methods=["GET", "HEAD", "POST", "DELETE"])
async def faults(request: Request, sim: Sim) -> Response:
    if request.method == "DELETE":
        sim.faults.clear()
        return JSONResponse({"ok": True})
    if request.method in {"GET", "HEAD"}:
        return JSONResponse(sim.faults.listing())
    spec = await request.json()
    try:
        fault = sim.inject(**spec)
    except (TypeError, ValueError) as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse(fault.as_dict())


@router.api_route("/settings", methods=["GET", "HEAD", "POST"])
async def settings(request: Request, sim: Sim) -> Response:
    if request.method == "POST":
        sim.configure(**(await request.json()))
    return JSONResponse(sim.settings())


@router.post("/operator/reply")
async def reply(request: Request, sim: Sim) -> Response:
    spec = await request.json()
    try:
        outcome = await asyncio.to_thread(events.operator_reply, sim.portal, sim.url, **spec)
    except ApiError as exc:
        return error_response(exc)
    except TypeError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse(outcome)


@router.post("/app/install")
async def app_install(request: Request, sim: Sim) -> Response:
    spec = await request.json()
    if not isinstance(spec, dict) or not isinstance(spec.get("handler"), str):
        return JSONResponse({"error": "handler (the app's event URL) is required"}, 400)
    outcome = await asyncio.to_thread(sim.install_app, spec["handler"])
    return JSONResponse(outcome)


@router.post("/app/uninstall")
async def app_uninstall(request: Request, sim: Sim) -> Response:
    body = await request.body()
    spec = await request.json() if body else {}
    clean = bool(spec.get("clean")) if isinstance(spec, dict) else False
    return JSONResponse(await asyncio.to_thread(sim.uninstall_app, clean))


@router.post("/oauth/expire")
async def expire(sim: Sim) -> Response:
    return JSONResponse({"expired": oauth.expire_access_tokens(sim.portal)})


@router.api_route("/credentials", methods=["GET", "HEAD"])
async def credentials(sim: Sim) -> Response:
    return JSONResponse({"webhook_url": sim.webhook_url, "oauth": sim.oauth.as_dict()})


__all__ = ["router"]
