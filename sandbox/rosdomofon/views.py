"""The world rendered as the API spells it (docs/rosdomofon-api.md §2), field names exactly as upstream.

Written from the facts doc, not from ``schemas/``: if our models drift from the wire, tests against
these shapes fail. Where the upstream package's models are stricter than the facts (a street's
``codeFias``/``codeKladr`` and an intercom's index are strings, a camera's ``address`` is an address
object), the views serve what those models parse: tests/sandbox/test_rosdomofon_contract.py drives
this simulator with the package's own client.
"""

from __future__ import annotations

import math
from typing import Any

from sandbox.rosdomofon.state import (
    Abonent,
    Account,
    Company,
    Connection,
    Entrance,
    Flat,
    Message,
    Service,
    World,
)


def company(c: Company) -> dict[str, Any]:
    return {"id": c.id, "shortName": c.short_name, "licenseeShort": c.licensee_short}


def company_info(c: Company) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "shortName": c.short_name,
        "licenseeShort": c.licensee_short,
        "paymentLink": f"https://pay.example/{c.short_name}",
        "personalAccountLink": f"https://lk.example/{c.short_name}",
        "supportChatEnabled": True,
        "supportPhone": "78002000000",
    }


def owner(a: Abonent) -> dict[str, Any]:
    return {"id": a.id, "phone": a.phone, "resolved": True, "neverLoggedIn": False}


def owner_detailed(w: World, a: Abonent) -> dict[str, Any]:
    others = [x for x in w.abonents.values() if x.id != a.id and x.company_id == a.company_id]
    delegations = []
    if others and a.id % 3 == 0:
        to = others[a.id % len(others)]
        delegations.append({
            "id": a.id * 10 + 1, "active": True, "notificationSuccess": True,
            "fromAbonent": {"id": a.id, "phone": a.phone}, "toAbonent": {"id": to.id, "phone": to.phone},
        })  # fmt: skip
    return {
        "id": a.id, "phone": a.phone, "resolved": True, "delegations": delegations, "fakeAuthOn": False,
        "forTest": False, "isClient": True, "neverLoggedIn": False,
        "supportRequestDate": "2025-11-20T10:00:00.000+0300", "uid": a.uid,
    }  # fmt: skip


def account(w: World, a: Account) -> dict[str, Any]:
    return {
        "id": a.id,
        "billingAvailable": True,
        "number": a.number,
        "termsOfUseLink": "https://rosdomofon.com/terms",
        "blockReason": a.block_reason,
        "owner": owner(w.abonents[a.owner_id]),
        "company": company(w.companies[a.company_id]),
        "blocked": a.blocked,
        "isCompanyRecurringEnabled": False,
    }


def address(w: World, e: Entrance, flat: str | None = None, *, detailed: bool = False) -> dict[str, Any]:
    entrance: dict[str, Any] = {
        "id": e.id, "number": e.number, "prefix": None, "flatStart": e.flat_start, "flatEnd": e.flat_end,
        "additionalFlatRanges": [
            {"id": r.id, "flatStart": r.flat_start, "flatEnd": r.flat_end} for r in e.additional_ranges
        ],
    }  # fmt: skip
    house: dict[str, Any] = {"id": e.house_id, "number": e.house}
    street: dict[str, Any] = {
        "id": e.street_id, "name": e.street, "codeFias": e.street_fias, "codeKladr": e.street_kladr,
    }  # fmt: skip
    result: dict[str, Any] = {
        "city": e.city,
        "country": {"name": "Россия", "shortName": "RU"},
        "entrance": entrance,
        "house": house,
        "street": street,
    }
    if flat is not None and flat.isdigit():
        result["flat"] = int(flat)
    if detailed:
        result["cityObject"] = {"id": 1, "name": e.city, "codeFias": None, "type": "г", "typeFull": "город"}
        house.update({"block": None, "building": None, "housing": None, "codeFias": None, "type": "д",
                      "typeFull": "дом", "geoLatitude": "56.1", "geoLongitude": "47.2",
                      "geoAccuracy": "exact"})  # fmt: skip
        street.update({"type": "ул", "typeFull": "улица", "universalCode": None})
    return result


def flat_detailed(w: World, f: Flat) -> dict[str, Any]:
    e = w.entrances.get(f.entrance_id) if f.entrance_id is not None else None
    owner_abonent = w.abonents.get(f.owner_id) if f.owner_id is not None else None
    adapter = (
        {"rdaUid": e.rda_uid, "intercomIndex": e.intercom_index, "cameraIds": [e.camera_id]} if e else None
    )
    return {
        "id": f.id, "accountId": f.account_id, "virtual": f.virtual, "blocked": f.blocked,
        "owner": owner_detailed(w, owner_abonent) if owner_abonent else None,
        "adapters": [adapter] if adapter else [],
        "cameraId": e.camera_id if e else None, "hardwareIntercomId": None, "softwareIntercomId": None,
        "rdaUid": e.rda_uid if e else None, "translated": 0,
        "address": address(w, e, f.flat_number, detailed=True) if e else None,
    }  # fmt: skip


def abonent_flat(w: World, f: Flat) -> dict[str, Any]:
    e = w.entrances.get(f.entrance_id) if f.entrance_id is not None else None
    return {
        "id": f.id, "address": address(w, e, f.flat_number) if e else None,
        "owner": {"id": f.owner_id} if f.owner_id is not None else None, "virtual": f.virtual,
        "accountId": f.account_id, "cameraId": e.camera_id if e else None,
        "rdaUid": e.rda_uid if e else None, "softwareIntercomId": None, "hardwareIntercomId": None,
    }  # fmt: skip


def service_short(s: Service) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "type": s.type}


def service(s: Service, *, created_at_as_str: bool = False) -> dict[str, Any]:
    return {
        **service_short(s), "companyId": s.company_id, "customName": s.custom_name,
        "createdAt": str(s.created_at) if created_at_as_str else s.created_at,
        "delegationTunings": {"limit": 3},
    }  # fmt: skip


def connection(w: World, c: Connection) -> dict[str, Any]:
    f = w.flats[c.flat_id]
    e = w.entrances.get(f.entrance_id) if f.entrance_id is not None else None
    acc = w.accounts.get(c.account_id) if c.account_id is not None else None
    return {
        "id": c.id, "blocked": c.blocked, "currency": c.currency, "tariff": c.tariff,
        "account": account(w, acc) if acc else None, "delegationTunings": {"limit": 3},
        "flat": {"id": f.id, "accountId": f.account_id, "virtual": f.virtual,
                 "address": address(w, e, f.flat_number) if e else None},
        "service": service(w.services[c.service_id]),
    }  # fmt: skip


def account_info(w: World, a: Account) -> dict[str, Any]:
    flats = {f.id for f in w.flats_of_account(a.id)}
    conns = [c for c in w.connections.values() if c.flat_id in flats or c.account_id == a.id]
    return {
        "id": a.id, "number": a.number, "blocked": a.blocked, "billingAvailable": True,
        "isCompanyRecurringEnabled": False, "termsOfUseLink": "https://rosdomofon.com/terms",
        "blockReason": a.block_reason, "paidUntil": a.paid_until,
        "balance": {"accountId": a.id, "balance": a.balance, "balanceDate": 1_764_000_000_000,
                    "currency": "RUB", "isPaymentAvailable": True, "recommendedPaymentDate": None,
                    "recommendedPaymentSum": None, "showBanner": a.balance < 0},
        "company": company_info(w.companies[a.company_id]),
        "owner": owner_detailed(w, w.abonents[a.owner_id]),
        "connections": [
            {"id": c.id, "blocked": c.blocked, "currency": c.currency, "tariff": c.tariff,
             "delegationTunings": {"limit": 3}, "flat": flat_detailed(w, w.flats[c.flat_id]),
             "service": {**service(w.services[c.service_id], created_at_as_str=True), "accounts": []}}
            for c in conns
        ],
        "invoice": {"amount": 150.0, "currency": "RUB", "dateBegin": "2025-11-01", "reminderNeeded": False,
                    "uid": f"inv-{a.id}"},
        "recurringPayment": {"amount": 150.0, "currency": "RUB", "date": 1_764_000_000_000,
                             "reason": None, "status": "NEW"},
    }  # fmt: skip


def entrance_with_services(w: World, e: Entrance) -> dict[str, Any]:
    return {
        "id": e.id,
        "addressString": e.address_string,
        "address": address(w, e),
        "services": [entrance_service(w, s) for s in w.services.values() if e.id in s.entrance_ids],
    }


def entrance_service(w: World, s: Service) -> dict[str, Any]:
    e = w.entrances[s.entrance_ids[0]]
    return {
        **service(s), "autoconnectionEnabled": False, "status": "ACTIVE", "tariff": s.tariff,
        "company": company(w.companies[s.company_id]),
        "cameras": [{"id": e.camera_id, "uid": e.camera_id * 7, "uri": f"rtsp://cam/{e.camera_id}",
                     "active": True, "address": address(w, e, detailed=True), "configuration": None,
                     "private": False, "rdvaId": 1}],
        "rdas": [{"id": e.id, "uid": e.rda_uid, "active": True,
                  "intercoms": [{"id": e.id * 10, "index": e.intercom_index,
                                 "location": {"id": 1, "name": "Подъезд"}}]}],
        "dependantServices": [],
    }  # fmt: skip


def entrance_detail(w: World, e: Entrance) -> dict[str, Any]:
    base = entrance_with_services(w, e)
    services = base["services"]
    return {**base, "cameras": services[0]["cameras"] if services else [],
            "rda": services[0]["rdas"][0] if services else None}  # fmt: skip


def message(w: World, m: Message) -> dict[str, Any]:
    a = w.abonents.get(m.abonent_id)
    return {
        "abonent": {"id": m.abonent_id, "phone": a.phone if a else None},
        "channel": m.channel,
        "id": m.id,
        "incoming": m.incoming,
        "message": m.text,
        "messageDate": m.date_ms,
    }


def page(items: list[Any], page_no: int, size: int) -> dict[str, Any]:
    """A Spring page: ``page`` counts from 0; ``last`` true on the final (or an empty) page."""
    total = len(items)
    content = items[page_no * size : (page_no + 1) * size]
    total_pages = math.ceil(total / size) if size else 0
    return {
        "content": content,
        "empty": not content,
        "first": page_no == 0,
        "last": page_no >= total_pages - 1,
        "number": page_no,
        "numberOfElements": len(content),
        "size": size,
        "totalElements": total,
        "totalPages": total_pages,
        "pageable": {"offset": page_no * size, "pageNumber": page_no, "pageSize": size, "paged": True,
                     "unpaged": False},
        "sort": {"sorted": False, "unsorted": True, "empty": True},
    }  # fmt: skip
