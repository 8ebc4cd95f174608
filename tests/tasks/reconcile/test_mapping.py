from __future__ import annotations

from tasks.reconcile import mapping as m
from tests.tasks.reconcile.factories import account, connection


def test_desired_contact_carries_origin_phone_and_owned_fields() -> None:
    desired = m.desired_contact(
        account(101, phone="8 (913) 123-45-67", blocked=True, block_reason="debt"),
        [connection(2, 101, service_id=5, name="Видео"), connection(1, 101, service_id=4, blocked=True)],
    )
    assert desired.origin_id == "101"
    assert desired.phone == "79131234567"
    f = desired.fields
    assert f["ORIGINATOR_ID"] == "rosdomofon" and f["ORIGIN_ID"] == "101"
    assert f[m.F_BLOCKED] == "Y" and f[m.F_BLOCK_REASON] == "debt"
    assert f[m.F_COMPANY] == "SK_SB" and f[m.F_ACCOUNT_NUMBER] == "0012345678"
    # ordered by connection id whatever the input order; blocked account => no active service
    lines = f[m.F_SERVICES].splitlines()
    assert lines[0].startswith("Домофон [HardwareIntercom #4]") and lines[0].endswith(": blocked")
    assert lines[1].startswith("Видео [HardwareIntercom #5]") and lines[1].endswith(": account blocked")
    assert f[m.F_SERVICES_ACTIVE] == "0"
    assert set(f) == set(m.OWNED_FIELDS)


def test_create_fields_have_name_and_one_mobile_phone_row() -> None:
    fields = m.desired_contact(account(5, phone=79990001122)).create_fields()
    assert fields["PHONE"] == [{"VALUE": "79990001122", "VALUE_TYPE": "MOBILE"}]
    assert fields["NAME"] == "Лицевой счёт 0012345678"
    assert fields["ORIGIN_ID"] == "5"


def test_invalid_owner_phone_gives_a_contact_without_phone() -> None:
    desired = m.desired_contact(account(6, phone=None))
    assert desired.phone is None and "PHONE" not in desired.create_fields()
    assert desired.fields[m.F_PHONE] == ""


def test_unblocked_account_drops_a_stale_block_reason() -> None:
    desired = m.desired_contact(account(7, blocked=False, block_reason="old"), [connection(1, 7)])
    assert desired.fields[m.F_BLOCK_REASON] == ""
    assert desired.fields[m.F_SERVICES_ACTIVE] == "1"


def test_normalise_value_folds_portal_spellings() -> None:
    assert m.normalise_value(m.F_BLOCKED, "1") == "Y"
    assert m.normalise_value(m.F_BLOCKED, 0) == "N"
    assert m.normalise_value(m.F_BLOCKED, "Y") == "Y"
    assert m.normalise_value(m.F_ACCOUNT_ID, 101) == "101"
    assert m.normalise_value(m.F_ACCOUNT_ID, 101.0) == "101"
    assert m.normalise_value(m.F_BLOCK_REASON, None) == ""
    assert m.normalise_value(m.F_BLOCK_REASON, []) == ""


def test_same_phone_across_formats() -> None:
    assert m.same_phone("+7 (913) 123-45-67", "79131234567")
    assert m.same_phone("89131234567", "79131234567")
    assert not m.same_phone("garbage", "79131234567")
