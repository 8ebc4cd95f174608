from __future__ import annotations

from typing import Any

from tasks.reconcile import mapping as m
from tasks.reconcile.plan import ObservedContact, WriteKind, assign_adoptions, build_plan
from tests.tasks.reconcile.factories import account, connection


def observed(contact_id: int, desired: m.DesiredContact | None = None, phones: Any = (), **fields: Any):
    wire: dict[str, Any] = {"ID": str(contact_id), "PHONE": list(phones)}
    if desired is not None:
        wire.update(desired.fields)
    wire.update(fields)
    return ObservedContact.from_wire(wire)


def test_missing_account_is_created() -> None:
    want = m.desired_contact(account(1))
    plan = build_plan([want], [])
    assert [w.kind for w in plan.writes] == [WriteKind.CREATE]
    assert plan.writes[0].fields["ORIGIN_ID"] == "1"


def test_equal_contact_is_unchanged_even_with_portal_spellings() -> None:
    want = m.desired_contact(account(1, blocked=True))
    have = observed(
        40,
        want,
        phones=[{"ID": "9", "VALUE": "+7 913 123-45-67", "VALUE_TYPE": "WORK"}],
        UF_CRM_RD_BLOCKED="1",
    )
    plan = build_plan([want], [have])
    assert plan.writes == [] and plan.unchanged == {1: 40}


def test_changed_field_updates_only_that_field() -> None:
    before = m.desired_contact(account(1))
    after = m.desired_contact(account(1, blocked=True, block_reason="debt"))
    have = observed(40, before, phones=[{"ID": "9", "VALUE": "79131234567"}])
    plan = build_plan([after], [have])
    (write,) = plan.writes
    assert write.kind == WriteKind.UPDATE and write.contact_id == 40
    assert write.fields == {m.F_BLOCKED: "Y", m.F_BLOCK_REASON: "debt"}


def test_new_owner_phone_modifies_our_row_by_id_and_keeps_others() -> None:
    before = m.desired_contact(account(1, phone=79131234567))
    after = m.desired_contact(account(1, phone=79990000000))
    have = observed(
        40,
        before,
        phones=[
            {"ID": "3", "VALUE": "74950000000"},
            {"ID": "9", "VALUE": "79131234567", "VALUE_TYPE": "WORK"},
        ],
    )
    (write,) = build_plan([after], [have]).writes
    assert write.fields["PHONE"] == [{"ID": 9, "VALUE": "79990000000", "VALUE_TYPE": "WORK"}]
    assert write.fields[m.F_PHONE] == "79990000000"


def test_phone_present_in_another_format_is_never_re_added() -> None:
    want = m.desired_contact(account(1, phone=79131234567))
    have = observed(40, want, phones=[{"ID": "9", "VALUE": "8-913-123-45-67"}])
    assert build_plan([want], [have]).writes == []


def test_lost_phone_row_is_added_once_without_id() -> None:
    want = m.desired_contact(account(1))
    (write,) = build_plan([want], [observed(40, want, phones=[])]).writes
    assert write.fields == {"PHONE": [{"VALUE": "79131234567", "VALUE_TYPE": "MOBILE"}]}


def test_duplicates_keep_the_lowest_id_and_are_reported() -> None:
    want = m.desired_contact(account(1))
    plan = build_plan(
        [want], [observed(50, want), observed(41, want, phones=[{"ID": 1, "VALUE": "79131234567"}])]
    )
    assert plan.unchanged == {1: 41}
    assert plan.duplicates == {"1": [41, 50]}


def test_adoption_sets_origin_and_fields_but_not_the_phone() -> None:
    want = m.desired_contact(account(1, phone=79131234567), [connection(3, 1)])
    stranger = observed(77, phones=[{"ID": "5", "VALUE": "+7 (913) 123-45-67"}], NAME="Иван")
    adoptable = assign_adoptions({1: "79131234567"}, [stranger])
    (write,) = build_plan([want], [], adoptable).writes
    assert write.kind == WriteKind.ADOPT and write.contact_id == 77
    assert write.fields["ORIGINATOR_ID"] == "rosdomofon" and write.fields["ORIGIN_ID"] == "1"
    assert "PHONE" not in write.fields and "NAME" not in write.fields


def test_adoption_never_takes_our_contact_or_one_contact_twice() -> None:
    ours = observed(10, m.desired_contact(account(9)), phones=[{"ID": 1, "VALUE": "79131234567"}])
    stranger = observed(20, phones=[{"ID": 2, "VALUE": "89131234567"}])
    result = assign_adoptions({1: "79131234567", 2: "79131234567"}, [ours, stranger])
    assert {a: c.id for a, c in result.items()} == {1: 20}


def test_counts() -> None:
    want = m.desired_contact(account(1))
    plan = build_plan([want, m.desired_contact(account(2, phone=79990001111))], [observed(40, want)])
    assert plan.counts()["create"] == 1 and plan.counts()["update"] == 1  # 40 lacks its phone row
