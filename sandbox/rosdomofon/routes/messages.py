"""Messages over REST: send (``POST /messages``, to ids or phones, or a broadcast to the company) and a
subscriber's history (``GET /abonents/{id}/messages``, paged, newest first)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request

from sandbox.rosdomofon import views
from sandbox.rosdomofon.context import Sim, SimContext, api_error
from sandbox.rosdomofon.routes.inputs import json_object, page_params, typed

CHANNELS = {"support", "notification"}

router = APIRouter()


@router.post("/messages")
async def send_messages(request: Request, sim: Sim) -> Any:
    body = await json_object(request)
    text = typed(body, "message", str)
    channel = typed(body, "channel", str)
    if channel not in CHANNELS:
        raise api_error(400, f"channel {channel!r} is not one of {sorted(CHANNELS)}")
    method = typed(body, "deliveryMethod", str, required=False)
    if method is not None and method != "push":
        raise api_error(400, f"deliveryMethod {method!r} is not 'push'")
    broadcast = typed(body, "broadcast", bool, required=False) or False
    recipients = typed(body, "toAbonents", list, required=not broadcast) or []
    w = sim.world
    with w.lock:
        if broadcast:
            targets: list[int | None] = [a.id for a in w.abonents.values() if a.company_id == sim.company_id]
        else:
            targets = [_resolve_recipient(sim, r) for r in recipients]
        results: list[dict[str, Any]] = []
        for abonent_id in targets:
            if abonent_id is None:
                results.append({"id": None, "success": False, "result": "abonent not found"})
                continue
            m = w.record_message(abonent_id, channel, text, incoming=False, source="rest")
            results.append({"id": m.id, "success": True, "result": "sent"})
        return results


@router.get("/abonents/{abonent_id}/messages")
def get_messages(abonent_id: int, request: Request, sim: Sim) -> Any:
    page, size = page_params(request)
    channel = request.query_params.get("channel") or None
    w = sim.world
    with w.lock:
        if abonent_id not in w.abonents:
            raise api_error(404, f"abonent {abonent_id} not found")
        items = [views.message(w, m) for m in w.history(abonent_id, channel)]
        return views.page(items, page, size)


def _resolve_recipient(sim: SimContext, item: Any) -> int | None:
    """``{"id": int, "phone": int}`` ([DC], phone may be 0) or ``{"phone": "+7XXXXXXXXXX"}`` ([LP])."""
    if not isinstance(item, dict):
        raise api_error(400, "toAbonents items must be objects")
    abonent_id, phone = item.get("id"), item.get("phone")
    if isinstance(abonent_id, int) and not isinstance(abonent_id, bool) and abonent_id:
        return abonent_id if abonent_id in sim.world.abonents else None
    digits = re.sub(r"\D", "", str(phone or ""))
    if len(digits) == 11:
        found = sim.world.abonent_by_phone(int(digits))
        return found.id if found else None
    raise api_error(400, "each toAbonents item needs an id or a phone")


__all__ = ["router"]
