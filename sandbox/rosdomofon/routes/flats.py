"""Flats: create one (``/flats``), list a subscriber's (``/abonents/{id}/flats``, flaky as upstream
says) and an entrance's (``/entrances/{id}/flats``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sandbox.rosdomofon import views
from sandbox.rosdomofon.context import Sim, api_error
from sandbox.rosdomofon.routes.inputs import json_object, typed
from sandbox.rosdomofon.state import Flat

router = APIRouter()


@router.post("/flats")
async def create_flat(request: Request, sim: Sim) -> Any:
    body = await json_object(request)
    flat_number = typed(body, "flatNumber", str)
    entrance_ref = typed(body, "entranceId", str, required=False)
    abonent_id = typed(body, "abonentId", int, required=False)
    virtual = typed(body, "virtual", bool, required=False) or False
    w = sim.world
    with w.lock:
        entrance_id = None
        if entrance_ref is not None:
            if not entrance_ref.isdigit() or int(entrance_ref) not in w.entrances:
                raise api_error(422, f"entrance {entrance_ref} not found")
            entrance_id = int(entrance_ref)
            if flat_number.isdigit() and not w.entrances[entrance_id].has_flat(int(flat_number)):
                raise api_error(422, f"flat {flat_number} is outside entrance {entrance_id} ranges")
        if abonent_id is not None and abonent_id not in w.abonents:
            raise api_error(422, f"abonent {abonent_id} not found")
        accounts = w.accounts_of(abonent_id) if abonent_id is not None else []
        flat = Flat(
            id=w.next_id(), flat_number=flat_number, entrance_id=entrance_id, owner_id=abonent_id,
            account_id=accounts[0].id if accounts else None, virtual=virtual,
        )  # fmt: skip
        w.flats[flat.id] = flat
        owner = {"id": abonent_id} if abonent_id is not None else None
        return {"id": flat.id, "owner": owner, "virtual": virtual}


@router.get("/abonents/{abonent_id}/flats")
def get_abonent_flats(abonent_id: int, sim: Sim) -> Any:
    # v0.1.15: the API "no longer supports" this and it "works every other time".
    if sim.flaky_abonent_flats and next(sim.abonent_flats_calls) % 2 == 1:
        raise api_error(500, "Internal Server Error")
    w = sim.world
    with w.lock:
        if abonent_id not in w.abonents:
            raise api_error(404, f"abonent {abonent_id} not found")
        return [views.abonent_flat(w, f) for f in w.flats.values() if f.owner_id == abonent_id]


@router.get("/entrances/{entrance_id}/flats")
def get_entrance_flats(entrance_id: int, sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        if entrance_id not in w.entrances:
            raise api_error(404, f"entrance {entrance_id} not found")
        return [views.flat_detailed(w, f) for f in w.flats.values() if f.entrance_id == entrance_id]


__all__ = ["router"]
