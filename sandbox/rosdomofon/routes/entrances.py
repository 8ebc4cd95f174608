"""Entrances: the address search (``/abonents-service/api/v1/entrances``, paged) and one entrance with
its cameras and RDA from the other service (``/rdas-service/api/v1/entrances/{id}/``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sandbox.rosdomofon import views
from sandbox.rosdomofon.context import Sim, api_error
from sandbox.rosdomofon.routes.inputs import page_params

router = APIRouter()
rdas_router = APIRouter(prefix="/rdas-service/api/v1")


@router.get("/entrances")
def get_entrances(request: Request, sim: Sim) -> Any:
    page, size = page_params(request)
    parts = [p.strip().lower() for p in request.query_params.get("address", "").split(",")]
    city, street, house = [*parts, "", "", ""][:3]
    w = sim.world
    with w.lock:
        found = [
            e for e in w.entrances.values()
            if city in e.city.lower() and street in e.street.lower() and (not house or house == e.house)
        ]  # fmt: skip
        return views.page([views.entrance_with_services(w, e) for e in found], page, size)


@rdas_router.get("/entrances/{entrance_id}/")
def get_entrance(entrance_id: int, sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        entrance = w.entrances.get(entrance_id)
        if entrance is None:
            raise api_error(404, f"entrance {entrance_id} not found")
        return views.entrance_detail(w, entrance)


__all__ = ["rdas_router", "router"]
