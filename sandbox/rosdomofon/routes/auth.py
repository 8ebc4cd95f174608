"""The token endpoint (the password grant of ``client_id=machine``) and the bearer check every
operator route depends on, with Spring Security's error bodies and ``WWW-Authenticate`` headers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request

from sandbox.rosdomofon.context import Sim

router = APIRouter()


def _unauthorized(error: str, description: str) -> HTTPException:
    return HTTPException(
        status_code=401,
        detail={"error": error, "error_description": description},
        headers={"WWW-Authenticate": f'Bearer realm="oauth2-resource", error="{error}"'},
    )


async def authorized(request: Request, sim: Sim) -> None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise _unauthorized("unauthorized", "Full authentication is required to access this resource")
    token = header[len("Bearer ") :].strip()
    status = sim.tokens.status(token)
    if status == "expired":
        raise _unauthorized("invalid_token", f"Access token expired: {token}")
    if status != "valid":
        raise _unauthorized("invalid_token", f"Invalid access token: {token}")


@router.post("/authserver-service/oauth/token")
async def token(request: Request, sim: Sim) -> Any:
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        raise HTTPException(400, detail={"error": "invalid_request", "error_description": "form expected"})
    form = await request.form()
    if form.get("client_id") != "machine":
        raise HTTPException(
            401, detail={"error": "invalid_client", "error_description": "Bad client credentials"}
        )
    if form.get("grant_type") != "password":
        raise HTTPException(400, detail={"error": "unsupported_grant_type",
                                         "error_description": "Unsupported grant type"})  # fmt: skip
    if form.get("username") != sim.username or form.get("password") != sim.password:
        raise HTTPException(400, detail={"error": "invalid_grant", "error_description": "Bad credentials"})
    return {
        "access_token": sim.tokens.issue(),
        "token_type": "bearer",
        "expires_in": int(sim.tokens.lifetime),
        "scope": "read write",
    }


__all__ = ["authorized", "router"]
