"""Sign-ups (v2): ``PATCH /abonents-service/api/v2/sign_ups/{id}`` sets status (lower-case on the wire,
stored upper-case as upstream shows it), ``isVirtual`` and ``rejectedReason``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sandbox.rosdomofon.context import Sim, api_error
from sandbox.rosdomofon.routes.inputs import json_object, typed

SIGNUP_STATUSES = {"unprocessed", "processed", "connected", "delegated", "rejected"}

router = APIRouter(prefix="/abonents-service/api/v2")


@router.patch("/sign_ups/{signup_id}")
async def update_signup(signup_id: int, request: Request, sim: Sim) -> Response:
    body = await json_object(request)
    status = typed(body, "status", str, required=False)
    if status is not None and status not in SIGNUP_STATUSES:
        raise api_error(400, f"status {status!r} is not one of {sorted(SIGNUP_STATUSES)}")
    is_virtual = typed(body, "isVirtual", bool, required=False)
    reason = typed(body, "rejectedReason", str, required=False)
    w = sim.world
    with w.lock:
        signup = w.signups.get(signup_id)
        if signup is None:
            raise api_error(404, f"sign-up {signup_id} not found")
        if status is not None:
            signup.status = status.upper()
        if is_virtual is not None:
            signup.virtual = is_virtual
        if reason is not None:
            signup.rejected_reason = reason
    return Response(status_code=200)


__all__ = ["router"]
