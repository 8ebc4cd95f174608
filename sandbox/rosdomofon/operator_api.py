"""The operator REST API (docs/rosdomofon-api.md §1-2): token endpoint and ``/abonents-service`` routes.

Request bodies are checked the way the facts say the server does: ``flatId`` must be a number,
``flatNumber``/``entranceId`` and the ``create_account`` phone strings, sign-up statuses lower-case,
REST ``deliveryMethod`` lower-case ``push``. Wrong types answer 400; well-typed but unusable
values (unknown flat, phone not ``7XXXXXXXXXX``, duplicate account number) answer 422.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from sandbox.rosdomofon import views
from sandbox.rosdomofon.context import SimContext, api_error
from sandbox.rosdomofon.state import Account, Connection, Flat

V1 = "/abonents-service/api/v1"
PHONE_RE = re.compile(r"^7\d{10}$")
SIGNUP_STATUSES = {"unprocessed", "processed", "connected", "delegated", "rejected"}
CHANNELS = {"support", "notification"}


def _unauthorized(error: str, description: str) -> HTTPException:
    return HTTPException(
        status_code=401,
        detail={"error": error, "error_description": description},
        headers={"WWW-Authenticate": f'Bearer realm="oauth2-resource", error="{error}"'},
    )


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise api_error(400, "JSON parse error: request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise api_error(400, "JSON parse error: expected an object")
    return body


def _page_params(request: Request) -> tuple[int, int]:
    try:
        page = int(request.query_params.get("page", 0))
        size = int(request.query_params.get("size", 20))
    except ValueError:
        raise api_error(400, "page and size must be integers") from None
    if page < 0 or size < 1:
        raise api_error(400, "page must be >= 0 and size >= 1")
    return page, min(size, 1000)


def _typed(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise api_error(400, f"{name} is required")
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise api_error(400, f"JSON parse error: {name} has the wrong type")
    if not isinstance(value, kind):
        raise api_error(400, f"JSON parse error: {name} has the wrong type ({type(value).__name__})")
    return value


def build_operator_router(ctx: SimContext) -> APIRouter:
    router = APIRouter()
    w = ctx.world

    def authorized(request: Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise _unauthorized("unauthorized", "Full authentication is required to access this resource")
        token = header[len("Bearer ") :].strip()
        status = ctx.tokens.status(token)
        if status == "expired":
            raise _unauthorized("invalid_token", f"Access token expired: {token}")
        if status != "valid":
            raise _unauthorized("invalid_token", f"Invalid access token: {token}")

    @router.post("/authserver-service/oauth/token")
    async def token(request: Request) -> Any:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            raise HTTPException(
                400, detail={"error": "invalid_request", "error_description": "form expected"}
            )
        form = await request.form()
        if form.get("client_id") != "machine":
            raise HTTPException(
                401, detail={"error": "invalid_client", "error_description": "Bad client credentials"}
            )
        if form.get("grant_type") != "password":
            raise HTTPException(400, detail={"error": "unsupported_grant_type",
                                             "error_description": "Unsupported grant type"})  # fmt: skip
        if form.get("username") != ctx.username or form.get("password") != ctx.password:
            raise HTTPException(
                400, detail={"error": "invalid_grant", "error_description": "Bad credentials"}
            )
        return {
            "access_token": ctx.tokens.issue(),
            "token_type": "bearer",
            "expires_in": int(ctx.tokens.lifetime),
            "scope": "read write",
        }

    api = APIRouter(prefix=V1, dependencies=[Depends(authorized)])

    def _account(account_id: int) -> Account:
        found = w.accounts.get(account_id)
        if found is None:
            raise api_error(404, f"account {account_id} not found")
        return found

    # --- accounts ----------------------------------------------------------------------------

    @api.get("/accounts")
    def get_accounts() -> Any:
        with w.lock:
            return [views.account(w, a) for a in w.accounts.values()]

    @api.get("/accounts/{account_id}")
    def get_account(account_id: int) -> Any:
        with w.lock:
            return views.account_info(w, _account(account_id))

    @api.get("/accounts/{account_id}/flats")
    def get_account_flats(account_id: int) -> Any:
        with w.lock:
            _account(account_id)
            return [views.flat_detailed(w, f) for f in w.flats_of_account(account_id)]

    @api.get("/accounts/{account_id}/connections")
    def get_account_connections(account_id: int) -> Any:
        with w.lock:
            _account(account_id)
            return [views.connection(w, c) for c in w.connections.values() if c.account_id == account_id]

    @api.post("/accounts")
    async def create_account(request: Request) -> Any:
        body = await _json_object(request)
        number = _typed(body, "number", str)
        phone = _typed(body, "phone", str)
        if not PHONE_RE.match(phone):
            raise api_error(422, f"phone {phone!r} must be 11 digits starting with 7, without '+'")
        with w.lock:
            if any(a.number == number for a in w.accounts.values()):
                raise api_error(422, f"account with number {number} already exists")
            owner = w.add_abonent(int(phone), ctx.company_id)
            account = Account(id=w.next_id(), number=number, owner_id=owner.id, company_id=ctx.company_id)
            w.accounts[account.id] = account
            return {"id": account.id, "owner": views.owner(owner)}

    def _set_account_blocked(ref: str, blocked: bool) -> Response:
        with w.lock:
            account = w.account_by_ref(ref)
            if account is None:
                raise api_error(404, f"account {ref} not found")
            account.blocked = blocked
            account.block_reason = "operator" if blocked else None
        return Response(status_code=200)

    @api.put("/accounts/{ref}/block")
    def block_account(ref: str) -> Response:
        return _set_account_blocked(ref, True)

    @api.delete("/accounts/{ref}/block")
    def unblock_account(ref: str) -> Response:
        return _set_account_blocked(ref, False)

    # --- flats -------------------------------------------------------------------------------

    @api.post("/flats")
    async def create_flat(request: Request) -> Any:
        body = await _json_object(request)
        flat_number = _typed(body, "flatNumber", str)
        entrance_ref = _typed(body, "entranceId", str, required=False)
        abonent_id = _typed(body, "abonentId", int, required=False)
        virtual = _typed(body, "virtual", bool, required=False) or False
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

    @api.get("/abonents/{abonent_id}/flats")
    def get_abonent_flats(abonent_id: int) -> Any:
        # v0.1.15: the API "no longer supports" this and it "works every other time".
        if ctx.flaky_abonent_flats and next(ctx.abonent_flats_calls) % 2 == 1:
            raise api_error(500, "Internal Server Error")
        with w.lock:
            if abonent_id not in w.abonents:
                raise api_error(404, f"abonent {abonent_id} not found")
            return [views.abonent_flat(w, f) for f in w.flats.values() if f.owner_id == abonent_id]

    @api.get("/entrances/{entrance_id}/flats")
    def get_entrance_flats(entrance_id: int) -> Any:
        with w.lock:
            if entrance_id not in w.entrances:
                raise api_error(404, f"entrance {entrance_id} not found")
            return [views.flat_detailed(w, f) for f in w.flats.values() if f.entrance_id == entrance_id]

    # --- services and connections ------------------------------------------------------------

    @api.get("/entrances/{entrance_id}/services")
    def get_entrance_services(entrance_id: int) -> Any:
        with w.lock:
            if entrance_id not in w.entrances:
                raise api_error(404, f"entrance {entrance_id} not found")
            return [views.service(s) for s in w.services.values() if entrance_id in s.entrance_ids]

    @api.get("/services")
    def get_services(request: Request) -> Any:
        page, size = _page_params(request)
        with w.lock:
            return views.page([views.service(s) for s in w.services.values()], page, size)

    def _service_id(service_id: int) -> int:
        if service_id not in w.services:
            raise api_error(404, f"service {service_id} not found")
        return service_id

    @api.post("/services/{service_id}/connections")
    async def connect_service(service_id: int, request: Request) -> Any:
        body = await _json_object(request)
        flat_id = _typed(body, "flatId", int)
        account_id = _typed(body, "accountId", int, required=False)
        with w.lock:
            _service_id(service_id)
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

    @api.get("/services/{service_id}/connections")
    def get_service_connections(service_id: int) -> Any:
        with w.lock:
            _service_id(service_id)
            return [views.connection(w, c) for c in w.connections.values() if c.service_id == service_id]

    def _set_connection_blocked(connection_id: int, blocked: bool) -> Response:
        with w.lock:
            connection = w.connections.get(connection_id)
            if connection is None:
                raise api_error(404, f"connection {connection_id} not found")
            connection.blocked = blocked
        return Response(status_code=200)

    @api.put("/services_connections/{connection_id}/block")
    def block_connection(connection_id: int) -> Response:
        return _set_connection_blocked(connection_id, True)

    @api.delete("/services_connections/{connection_id}/block")
    def unblock_connection(connection_id: int) -> Response:
        return _set_connection_blocked(connection_id, False)

    # --- entrances ---------------------------------------------------------------------------

    @api.get("/entrances")
    def get_entrances(request: Request) -> Any:
        page, size = _page_params(request)
        parts = [p.strip().lower() for p in request.query_params.get("address", "").split(",")]
        city, street, house = [*parts, "", "", ""][:3]
        with w.lock:
            found = [
                e for e in w.entrances.values()
                if city in e.city.lower() and street in e.street.lower() and (not house or house == e.house)
            ]  # fmt: skip
            return views.page([views.entrance_with_services(w, e) for e in found], page, size)

    # --- messages ----------------------------------------------------------------------------

    @api.post("/messages")
    async def send_messages(request: Request) -> Any:
        body = await _json_object(request)
        text = _typed(body, "message", str)
        channel = _typed(body, "channel", str)
        if channel not in CHANNELS:
            raise api_error(400, f"channel {channel!r} is not one of {sorted(CHANNELS)}")
        method = _typed(body, "deliveryMethod", str, required=False)
        if method is not None and method != "push":
            raise api_error(400, f"deliveryMethod {method!r} is not 'push'")
        broadcast = _typed(body, "broadcast", bool, required=False) or False
        recipients = _typed(body, "toAbonents", list, required=not broadcast) or []
        with w.lock:
            if broadcast:
                targets: list[int | None] = [
                    a.id for a in w.abonents.values() if a.company_id == ctx.company_id
                ]
            else:
                targets = [_resolve_recipient(ctx, r) for r in recipients]
            results: list[dict[str, Any]] = []
            for abonent_id in targets:
                if abonent_id is None:
                    results.append({"id": None, "success": False, "result": "abonent not found"})
                    continue
                m = w.record_message(abonent_id, channel, text, incoming=False, source="rest")
                results.append({"id": m.id, "success": True, "result": "sent"})
            return results

    @api.get("/abonents/{abonent_id}/messages")
    def get_messages(abonent_id: int, request: Request) -> Any:
        page, size = _page_params(request)
        channel = request.query_params.get("channel") or None
        with w.lock:
            if abonent_id not in w.abonents:
                raise api_error(404, f"abonent {abonent_id} not found")
            items = [views.message(w, m) for m in w.history(abonent_id, channel)]
            return views.page(items, page, size)

    router.include_router(api)

    # --- sign-ups (v2) and rdas-service --------------------------------------------------------

    @router.patch("/abonents-service/api/v2/sign_ups/{signup_id}", dependencies=[Depends(authorized)])
    async def update_signup(signup_id: int, request: Request) -> Response:
        body = await _json_object(request)
        status = _typed(body, "status", str, required=False)
        if status is not None and status not in SIGNUP_STATUSES:
            raise api_error(400, f"status {status!r} is not one of {sorted(SIGNUP_STATUSES)}")
        is_virtual = _typed(body, "isVirtual", bool, required=False)
        reason = _typed(body, "rejectedReason", str, required=False)
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

    @router.get("/rdas-service/api/v1/entrances/{entrance_id}/", dependencies=[Depends(authorized)])
    def get_entrance(entrance_id: int) -> Any:
        with w.lock:
            entrance = w.entrances.get(entrance_id)
            if entrance is None:
                raise api_error(404, f"entrance {entrance_id} not found")
            return views.entrance_detail(w, entrance)

    return router


def _resolve_recipient(ctx: SimContext, item: Any) -> int | None:
    """``{"id": int, "phone": int}`` ([DC], phone may be 0) or ``{"phone": "+7XXXXXXXXXX"}`` ([LP])."""
    if not isinstance(item, dict):
        raise api_error(400, "toAbonents items must be objects")
    abonent_id, phone = item.get("id"), item.get("phone")
    if isinstance(abonent_id, int) and not isinstance(abonent_id, bool) and abonent_id:
        return abonent_id if abonent_id in ctx.world.abonents else None
    digits = re.sub(r"\D", "", str(phone or ""))
    if len(digits) == 11:
        found = ctx.world.abonent_by_phone(int(digits))
        return found.id if found else None
    raise api_error(400, "each toAbonents item needs an id or a phone")


__all__ = ["build_operator_router"]
