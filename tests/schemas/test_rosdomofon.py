from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.rosdomofon import (
    Account,
    AccountInfo,
    Adapter,
    Address,
    AuthResponse,
    Camera,
    CreateAccountRequest,
    CreateConnectionRequest,
    CreateFlatRequest,
    CreateFlatResponse,
    Entrance,
    EntranceDetail,
    EntrancesResponse,
    FlatDetailed,
    Intercom,
    MessagesResponse,
    SendMessageRequest,
    Service,
    SignUpStatus,
    SignUpStatusUpdate,
)

ACCOUNT_WIRE = {
    "id": 10000,
    "billingAvailable": True,
    "number": "0100000000",
    "termsOfUseLink": None,
    "blockReason": None,
    "owner": {"id": 900003, "phone": 79623832096, "resolved": True, "neverLoggedIn": False},
    "company": {"id": 1292, "shortName": "SK_SB", "licenseeShort": "SK"},
    "blocked": False,
    "isCompanyRecurringEnabled": False,
    "somethingNew": {"x": 1},
}


def test_account_reads_wire_names_and_keeps_unknown_fields() -> None:
    account = Account.model_validate(ACCOUNT_WIRE)
    assert account.owner.phone == 79623832096
    assert account.company.short_name == "SK_SB"
    assert account.is_company_recurring_enabled is False
    assert account.model_extra == {"somethingNew": {"x": 1}}
    dumped = account.model_dump(mode="json", by_alias=True)
    assert dumped["isCompanyRecurringEnabled"] is False
    assert dumped["somethingNew"] == {"x": 1}


def test_account_accepts_python_names() -> None:
    account = Account(
        id=1, owner={"id": 2, "phone": "8 913 123 45 67"}, company={"id": 3, "short_name": "SK_SB"},
        is_company_recurring_enabled=True,
    )  # fmt: skip
    assert account.owner.phone == 79131234567
    assert account.company.short_name == "SK_SB"


def test_missing_required_field_is_named() -> None:
    wire = {k: v for k, v in ACCOUNT_WIRE.items() if k != "isCompanyRecurringEnabled"}
    with pytest.raises(ValidationError) as exc:
        Account.model_validate(wire)
    assert "isCompanyRecurringEnabled" in str(exc.value)


def test_bad_phone_in_response_names_the_value() -> None:
    wire = {**ACCOUNT_WIRE, "owner": {"id": 1, "phone": 12345}}
    with pytest.raises(ValidationError) as exc:
        Account.model_validate(wire)
    assert "12345" in str(exc.value)


def test_auth_response_requires_token_and_lifetime() -> None:
    auth = AuthResponse.model_validate(
        {"access_token": "t", "token_type": "bearer", "expires_in": 3600, "scope": "read"}
    )
    assert auth.expires_in == 3600
    with pytest.raises(ValidationError) as exc:
        AuthResponse.model_validate({"token_type": "bearer", "expires_in": 3600})
    assert "access_token" in str(exc.value)


def test_create_account_request_sends_phone_as_11_digit_string() -> None:
    assert CreateAccountRequest(number="A1", phone="+7 (913) 123-45-67").to_wire() == {
        "number": "A1",
        "phone": "79131234567",
    }
    assert CreateAccountRequest(number="A1", phone=79131234567).to_wire()["phone"] == "79131234567"
    with pytest.raises(ValidationError) as exc:
        CreateAccountRequest(number="A1", phone="+1 555 0100")
    assert "+1 555 0100" in str(exc.value)


def test_create_flat_request_spells_strings_and_omits_nulls() -> None:
    body = CreateFlatRequest(flat_number=12, entrance_id=101).to_wire()
    assert body == {"entranceId": "101", "flatNumber": "12", "virtual": False}
    full = CreateFlatRequest.model_validate({"abonentId": 5, "flatNumber": "7", "virtual": True}).to_wire()
    assert full == {"abonentId": 5, "flatNumber": "7", "virtual": True}
    assert CreateFlatResponse.model_validate({"id": 1, "owner": {"id": 5}, "virtual": False}).address is None


def test_connection_request_sends_flat_id_as_number() -> None:
    assert CreateConnectionRequest(flat_id="12").to_wire() == {"flatId": 12}
    with pytest.raises(ValidationError) as exc:
        CreateConnectionRequest(flat_id="twelve")
    assert "flatId" in str(exc.value) or "flat_id" in str(exc.value)


def test_service_requires_id_name_type() -> None:
    with pytest.raises(ValidationError) as exc:
        Service.model_validate({"id": 1, "name": "Gate"})
    assert "type" in str(exc.value)


def test_send_message_request_shape() -> None:
    body = SendMessageRequest(to_abonents=[{"id": 7, "phone": 0}], message="hi").to_wire()
    assert body == {
        "toAbonents": [{"id": 7, "phone": 0}],
        "channel": "support",
        "message": "hi",
        "deliveryMethod": "push",
        "broadcast": False,
    }
    with pytest.raises(ValidationError):
        SendMessageRequest(to_abonents=[], message="hi")


def test_account_info_delegations_as_objects_or_legacy_strings() -> None:
    info = AccountInfo.model_validate(
        {
            "id": 1, "number": "N", "blocked": False, "paidUntil": "2026-01-01",
            "balance": {"accountId": 1, "balance": -1.5, "balanceDate": 1, "currency": "RUB",
                        "isPaymentAvailable": True, "showBanner": True},
            "owner": {"id": 9, "delegations": [
                {"id": 1, "fromAbonent": {"id": 9, "phone": 79131234567}, "toAbonent": {"id": 8, "phone": 0}},
                {"id": 2, "fromAbonent": "79131234567", "toAbonent": "79131234568"},
            ]},
            "recurringPayment": {"amount": 1, "status": "PENDING", "date": 5},
            "invoice": {"amount": 150, "dateBegin": "2025-11-01"},
        }
    )  # fmt: skip
    first, legacy = info.owner.delegations
    assert first.from_abonent.phone == 79131234567
    assert first.to_abonent.id == 8
    assert legacy.from_abonent == "79131234567"
    assert info.balance.balance == -1.5
    assert info.recurring_payment.status == "PENDING"


def test_messages_page_round_trip() -> None:
    wire = {
        "content": [{"abonent": {"id": 1, "phone": 79308312222}, "channel": "support", "id": 5,
                     "incoming": True, "message": "hi", "messageDate": 1764000000000}],
        "first": True, "last": True, "number": 0, "numberOfElements": 1, "size": 20,
        "totalElements": 1, "totalPages": 1, "empty": False,
        "pageable": {"offset": 0, "pageNumber": 0, "pageSize": 20, "paged": True, "unpaged": False},
        "sort": {"sorted": False, "unsorted": True, "empty": True},
    }  # fmt: skip
    page = MessagesResponse.model_validate(wire)
    assert page.content[0].incoming is True
    assert page.pageable.page_size == 20
    assert page.model_dump(mode="json", by_alias=True, exclude_unset=True) == wire


def test_entrance_flat_ranges() -> None:
    page = EntrancesResponse.model_validate(
        {"content": [{"id": 1, "addressString": "x", "address": {"entrance": {
            "id": 1, "number": "1", "flatStart": 1, "flatEnd": 40,
            "additionalFlatRanges": [{"id": 2, "flatStart": 500, "flatEnd": 505}]}}}], "last": True}
    )  # fmt: skip
    entrance: Entrance = page.content[0].address.entrance
    assert entrance.has_flat(1) and entrance.has_flat(40) and entrance.has_flat(503)
    assert not entrance.has_flat(41)


def test_signup_status_update_lowercases_and_rejects_unknown() -> None:
    assert SignUpStatusUpdate(status="PROCESSED").to_wire() == {"status": "processed"}
    assert SignUpStatusUpdate(status=SignUpStatus.REJECTED, rejected_reason="no flat").to_wire() == {
        "status": "rejected",
        "rejectedReason": "no flat",
    }
    with pytest.raises(ValidationError) as exc:
        SignUpStatusUpdate(status="done")
    assert "done" in str(exc.value)


# --- where the sources disagree: the upstream package's models vs older data and the Kafka sample ---

STREET_UPSTREAM = {"id": 200, "name": "Ленина", "codeFias": "6f3b1c4e-0000-4000-8000-000000000001",
                   "codeKladr": "21000001000000200"}  # fmt: skip
STREET_NULL_CODES = {"id": 200, "name": "Ленина", "codeFias": None, "codeKladr": None}
ENTRANCE = {"id": 100, "number": "1", "flatStart": 1, "flatEnd": 40, "additionalFlatRanges": []}


def _address(street: dict) -> dict:
    return {"city": "Чебоксары", "country": {"name": "Россия", "shortName": "RU"}, "entrance": ENTRANCE,
            "house": {"id": 400, "number": "1"}, "street": street, "flat": 7}  # fmt: skip


@pytest.mark.parametrize(("wire", "read"), [(0, "0"), (3, "3"), ("1", "1"), ("A2", "A2"), (None, None)])
def test_intercom_index_reads_int_or_string_as_string(wire: object, read: str | None) -> None:
    assert Adapter.model_validate({"rdaUid": "rda-1", "intercomIndex": wire}).intercom_index == read
    assert Intercom.model_validate({"id": 1, "index": wire}).index == read


def test_intercom_index_of_another_type_is_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        Adapter.model_validate({"intercomIndex": [1]})
    assert "intercomIndex" in str(exc.value)


@pytest.mark.parametrize("street", [STREET_UPSTREAM, STREET_NULL_CODES], ids=["strings", "nulls"])
def test_street_codes_are_strings_or_null(street: dict) -> None:
    parsed = Address.model_validate(_address(street)).street
    assert parsed.code_fias == street["codeFias"] and parsed.code_kladr == street["codeKladr"]
    assert parsed.to_wire().get("codeKladr") == street["codeKladr"]


def test_camera_address_as_object_or_string() -> None:
    as_object = Camera.model_validate({"id": 7000, "uid": 49000, "address": _address(STREET_UPSTREAM)})
    assert isinstance(as_object.address, Address)
    assert as_object.address.street.code_kladr == "21000001000000200"
    as_string = Camera.model_validate({"id": 7000, "address": "Чебоксары, Ленина, 1, подъезд 1"})
    assert as_string.address == "Чебоксары, Ленина, 1, подъезд 1"
    with pytest.raises(ValidationError):
        Camera.model_validate({"id": 7000, "address": 12})


def test_lists_the_upstream_declares_optional_read_null_as_empty() -> None:
    flat = FlatDetailed.model_validate({"id": 1, "adapters": None, "owner": {"id": 2, "delegations": None}})
    assert flat.adapters == [] and flat.owner.delegations == []
    detail = EntranceDetail.model_validate({"id": 1, "cameras": None, "services": None, "rda": None})
    assert detail.cameras == [] and detail.services == []


def _entrances_page(*, upstream: bool) -> dict:
    """One ``GET /entrances`` page as the upstream models type it, or as our simulator used to send it."""
    street = STREET_UPSTREAM if upstream else STREET_NULL_CODES
    camera_address = _address(street) if upstream else "Чебоксары, Ленина, 1, подъезд 1"
    index = "1" if upstream else 1
    service = {
        "id": 5, "name": "Ленина, 1", "type": "HardwareIntercom", "companyId": 1003,
        "cameras": [{"id": 7000, "uid": 49000, "address": camera_address, "active": True}],
        "rdas": [{"id": 100, "uid": "rda-1", "active": True, "intercoms": [{"id": 1000, "index": index}]}],
        "dependantServices": [{"id": None, "name": None, "type": None, "accounts": None}],
    }  # fmt: skip
    entrance = {"id": 100, "addressString": "Чебоксары, Ленина, 1, подъезд 1", "services": [service]}
    return {"content": [entrance], "first": True, "last": True, "number": 0, "size": 20, "totalElements": 1,
            "totalPages": 1}  # fmt: skip


@pytest.mark.parametrize("upstream", [True, False], ids=["upstream-types", "older-simulator-types"])
def test_entrances_page_reads_either_typing_the_same_way(upstream: bool) -> None:
    service = EntrancesResponse.model_validate(_entrances_page(upstream=upstream)).content[0].services[0]
    assert service.rdas[0].intercoms[0].index == "1"
    assert service.cameras[0].address is not None
    assert service.dependant_services[0].accounts == []
