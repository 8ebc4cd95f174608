"""Services and their connections: an entrance's services, the paged list, connect a flat, a service's
connections, block and unblock a connection (``/services_connections/{id}/block``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from sandbox.rosdomofon import views
from sandbox.rosdomofon.context import Sim, api_error
from sandbox.rosdomofon.routes.inputs import json_object, page_params, typed
from sandbox.rosdomofon.state import Connection, World

router = APIRouter()


def _known_service(w: World, service_id: int) -> int:
    if service_id not in w.services:
        raise api_error(404, f"service {service_id} not found")
    return service_id


@router.get("/entrances/{entrance_id}/services")
def get_entrance_services(entrance_id: int, sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        if entrance_id not in w.entrances:
            raise api_error(404, f"entrance {entrance_id} not found")
        return [views.service(s) for s in w.services.values() if entrance_id in s.entrance_ids]


@router.get("/services")
def get_services(request: Request, sim: Sim) -> Any:
    page, size = page_params(request)
    w = sim.world
    with w.lock:
        return views.page([views.service(s) for s in w.services.values()], page, size)


@router.post("/services/{service_id}/connections")
async def connect_service(service_id: int, request: Request, sim: Sim) -> Any:
    body = await json_object(request)
    flat_id = typed(body, "flatId", int)
    account_id = typed(body, "accountId", int, required=False)
    w = sim.world
    with w.lock:
        _known_service(w, service_id)
        flat = w.flats.get(flat_id)
        if flat is None:
            raise api_error(422, f"flat {flat_id} not found")
        if account_id is not None and account_id not in w.accounts:
            raise api_error(422, f"account {account_id} not found")
        connection = Connection(
            id=w.next_id(), service_id=service_id, flat_id=flat_id,
            account_id=account_id if account_id is not None else flat.account_id,
            tariff=w.services[service_id].tariff,
        )  # fmt: skip
        w.connections[connection.id] = connection
        return {"id": connection.id}


@router.get("/services/{service_id}/connections")
def get_service_connections(service_id: int, sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        _known_service(w, service_id)
        return [views.connection(w, c) for c in w.connections.values() if c.service_id == service_id]


def _set_blocked(w: World, connection_id: int, blocked: bool) -> Response:
    with w.lock:
        connection = w.connections.get(connection_id)
        if connection is None:
            raise api_error(404, f"connection {connection_id} not found")
        connection.blocked = blocked
    return Response(status_code=200)


@router.put("/services_connections/{connection_id}/block")
def block_connection(connection_id: int, sim: Sim) -> Response:
    return _set_blocked(sim.world, connection_id, True)


@router.delete("/services_connections/{connection_id}/block")
def unblock_connection(connection_id: int, sim: Sim) -> Response:
    return _set_blocked(sim.world, connection_id, False)


__all__ = ["router"]
