"""The OAuth server's two endpoints: ``/oauth/authorize/`` (a code, redirected when a URI is known) and
``/oauth/token/`` (GET or POST; the rotation itself is :mod:`sandbox.bitrix24.oauth`)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from sandbox.bitrix24 import oauth
from sandbox.bitrix24.routes.errors import error_response
from sandbox.bitrix24.routes.host import Sim
from sandbox.bitrix24.state import ApiError

router = APIRouter(prefix="/oauth")


@router.api_route("/authorize/", methods=["GET", "HEAD"])
async def authorize(request: Request, sim: Sim) -> Response:
    portal = sim.portal
    query = dict(request.query_params)
    try:
        code = oauth.authorize(portal, query.get("client_id", ""))
    except ApiError as exc:
        return error_response(exc)
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


@router.api_route("/token/", methods=["GET", "HEAD", "POST"])
async def token(request: Request, sim: Sim) -> Response:
    params = dict(request.query_params)
    if request.method == "POST":
        params.update(dict(parse_qsl((await request.body()).decode(), keep_blank_values=True)))
    try:
        return JSONResponse(oauth.exchange(sim.portal, params, sim.url))
    except ApiError as exc:
        return error_response(exc)


__all__ = ["router"]
