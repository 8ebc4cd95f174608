"""``/accounts``: list, read (info, flats, connections), create, block and unblock."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response

from sandbox.rosdomofon import views
from sandbox.rosdomofon.context import Sim, api_error
from sandbox.rosdomofon.routes.inputs import json_object, typed
from sandbox.rosdomofon.state import Account, World

PHONE_RE = re.compile(r"^7\d{10}$")

router = APIRouter(prefix="/accounts")


def _account(w: World, account_id: int) -> Account:
    found = w.accounts.get(account_id)
    if found is None:
        raise api_error(404, f"account {account_id} not found")
    return found


@router.get("")
def get_accounts(sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        return [views.account(w, a) for a in w.accounts.values()]


@router.get("/{account_id}")
def get_account(account_id: int, sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        return views.account_info(w, _account(w, account_id))


@router.get("/{account_id}/flats")
def get_account_flats(account_id: int, sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        _account(w, account_id)
        return [views.flat_detailed(w, f) for f in w.flats_of_account(account_id)]


@router.get("/{account_id}/connections")
def get_account_connections(account_id: int, sim: Sim) -> Any:
    w = sim.world
    with w.lock:
        _account(w, account_id)
        return [views.connection(w, c) for c in w.connections.values() if c.account_id == account_id]


@router.post("")
async def create_account(request: Request, sim: Sim) -> Any:
    body = await json_object(request)
    number = typed(body, "number", str)
    phone = typed(body, "phone", str)
    if not PHONE_RE.match(phone):
        raise api_error(422, f"phone {phone!r} must be 11 digits starting with 7, without '+'")
    w = sim.world
    with w.lock:
        if any(a.number == number for a in w.accounts.values()):
            raise api_error(422, f"account with number {number} already exists")
        owner = w.add_abonent(int(phone), sim.company_id)
        account = Account(id=w.next_id(), number=number, owner_id=owner.id, company_id=sim.company_id)
        w.accounts[account.id] = account
        return {"id": account.id, "owner": views.owner(owner)}


def _set_blocked(w: World, ref: str, blocked: bool) -> Response:
    with w.lock:
        account = w.account_by_ref(ref)
        if account is None:
            raise api_error(404, f"account {ref} not found")
        account.blocked = blocked
        account.block_reason = "operator" if blocked else None
    return Response(status_code=200)


@router.put("/{ref}/block")
def block_account(ref: str, sim: Sim) -> Response:
    return _set_blocked(sim.world, ref, True)


@router.delete("/{ref}/block")
def unblock_account(ref: str, sim: Sim) -> Response:
    return _set_blocked(sim.world, ref, False)


__all__ = ["router"]
