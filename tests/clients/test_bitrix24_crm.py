"""CRM helpers against the simulator: batch, paging, phone lookup, multifields, ambiguous creates."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from clients.bitrix24 import Bitrix24AmbiguousWriteError, Bitrix24Client
from sandbox.bitrix24 import Bitrix24Simulator

MakeClient = Callable[..., Bitrix24Client]


def _seed(client: Bitrix24Client, count: int, prefix: str = "7900") -> list[int]:
    outcome = client.batch(
        {
            f"c{i}": (
                "crm.contact.add",
                {"fields": {"NAME": f"N{i}", "PHONE": [{"VALUE": f"{prefix}{i:07d}"}]}},
            )
            for i in range(count)
        }
    )
    assert outcome.ok
    return [int(outcome.results[f"c{i}"]) for i in range(count)]


def test_batch_references_and_partial_failures(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_webhook_client: Bitrix24Client
) -> None:
    client = bitrix24_webhook_client
    outcome = client.batch(
        {
            "add": ("crm.contact.add", {"fields": {"NAME": "Ref", "PHONE": [{"VALUE": "79001112233"}]}}),
            "get": "crm.contact.get?id=$result[add]",
            "list": ("crm.contact.list", {"filter": {"ID": "$result[add]"}, "select": ["ID", "NAME"]}),
            "first": "crm.contact.get?id=$result[list][0][ID]",
            "missing": "crm.contact.get?id=999999",
            "after": (
                "crm.timeline.comment.add",
                {"fields": {"ENTITY_ID": "$result[add]", "ENTITY_TYPE": "contact", "COMMENT": "hi"}},
            ),
        }
    )
    new_id = outcome.results["add"]
    assert outcome.results["get"]["NAME"] == "Ref" and outcome.results["first"]["ID"] == str(new_id)
    assert outcome.totals["list"] == 1
    assert set(outcome.errors) == {"missing"} and outcome.errors["missing"].error_description == "Not found"
    assert "after" in outcome.results  # without halt the commands after a failure still run
    assert outcome.requests == 1


def test_batch_failed_source_gives_literal_text_and_halt_stops(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_webhook_client: Bitrix24Client
) -> None:
    client = bitrix24_webhook_client
    loose = client.batch({"bad": "crm.contact.get?id=0", "use": "crm.contact.get?id=$result[bad][ID]"})
    assert set(loose.errors) == {"bad", "use"}  # "$result[bad][ID]" went through as text: invalid ID
    halted = client.batch(
        {"bad": "crm.contact.get?id=0", "next": ("crm.contact.add", {"fields": {"NAME": "no"}})}, halt=True
    )
    assert set(halted.errors) == {"bad"} and "next" not in halted.results
    assert bitrix24_fresh.portal.contacts == {}


def test_batch_chunks_past_fifty_and_resolves_cross_chunk_refs(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_webhook_client: Bitrix24Client
) -> None:
    commands: dict[str, object] = {
        f"a{i}": ("crm.contact.add", {"fields": {"NAME": f"X{i}"}}) for i in range(55)
    }
    commands["late"] = "crm.contact.get?id=$result[a3]"  # a3 ran in the first chunk
    outcome = bitrix24_webhook_client.batch(commands)  # type: ignore[arg-type]
    assert outcome.ok and outcome.requests == 2 and len(bitrix24_fresh.portal.contacts) == 55
    assert outcome.results["late"]["NAME"] == "X3"


def test_id_window_paging_over_a_few_hundred_contacts(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_webhook_client: Bitrix24Client
) -> None:
    client = bitrix24_webhook_client
    ids = _seed(client, 130) + _seed(client, 130, prefix="7901")
    counts_before = bitrix24_fresh.portal.summary()["counts"].get("crm.contact.list", 0)
    by_id = [int(r["ID"]) for r in client.scan_by_id("crm.contact.list", select=["ID", "PHONE"])]
    assert by_id == sorted(ids)
    assert (
        bitrix24_fresh.portal.summary()["counts"]["crm.contact.list"] - counts_before == 6
    )  # 260 rows: 5 full + 1
    filtered = list(client.scan_by_id("crm.contact.list", filter={"%NAME": "N12"}, select=["ID", "NAME"]))
    assert {r["NAME"] for r in filtered} == {f"N{i}" for i in range(130) if "N12" in f"N{i}"}


@pytest.mark.parametrize("stored", ["79131234567", "+7 (913) 123-45-67"])
def test_find_by_phone_across_formats(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_webhook_client: Bitrix24Client, stored: str
) -> None:
    client = bitrix24_webhook_client
    raw = client.call(
        "crm.contact.add", {"fields": {"NAME": "Fmt", "PHONE": [{"VALUE": stored, "VALUE_TYPE": "WORK"}]}}
    )
    other = client.create_contact({"NAME": "Other", "PHONE": [{"VALUE": "8 (913) 000-00-01"}]})
    found = client.find_contacts_by_phone(["+7 913 123 45 67", "89131234567", "79130000001", "79995550000"])
    assert found == {"79131234567": [raw], "79130000001": [other], "79995550000": []}


def test_find_by_phone_chunks_of_twenty(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_webhook_client: Bitrix24Client
) -> None:
    client = bitrix24_webhook_client
    ids = _seed(client, 45, prefix="7902")
    phones = [f"7902{i:07d}" for i in range(45)]
    found = client.find_contacts_by_phone(phones)
    assert found == {p: [i] for p, i in zip(phones, ids, strict=True)}
    assert bitrix24_fresh.portal.summary()["inner_counts"]["crm.duplicate.findbycomm"] == 3


def test_update_does_not_duplicate_an_existing_number(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_webhook_client: Bitrix24Client
) -> None:
    client = bitrix24_webhook_client
    contact_id = client.create_contact({"NAME": "Multi", "PHONE": [{"VALUE": "79131234567"}]})
    client.update_contact(
        contact_id, {"PHONE": [{"VALUE": "+7 913 123-45-67"}, {"VALUE": "79137654321"}], "NAME": "M2"}
    )
    client.update_contact(contact_id, {"PHONE": [{"VALUE": "89131234567", "VALUE_TYPE": "HOME"}]})
    contact = client.get_contact(contact_id)
    assert sorted((p.VALUE, p.VALUE_TYPE) for p in contact.PHONE) == [
        ("79131234567", "HOME"),
        ("79137654321", "MOBILE"),
    ]
    assert contact.NAME == "M2"
    # Sent raw, a row without ID duplicates the number: the portal behaviour our helper avoids.
    client.call("crm.contact.update", {"id": contact_id, "fields": {"PHONE": [{"VALUE": "79137654321"}]}})
    assert len(client.get_contact(contact_id).PHONE) == 3
    row = next(p for p in client.get_contact(contact_id).PHONE if p.VALUE == "79131234567")
    client.update_contact(contact_id, {"PHONE": [{"ID": row.ID, "DELETE": "Y"}]})
    assert "79131234567" not in [p.VALUE for p in client.get_contact(contact_id).PHONE]


def test_ambiguous_create_ends_with_exactly_one_contact(
    bitrix24_fresh: Bitrix24Simulator, make_bitrix24_client: MakeClient
) -> None:
    client = make_bitrix24_client("webhook", timeout=0.5)
    bitrix24_fresh.inject("commit_then_timeout", method="crm.contact.add", count=1, seconds=1.5)
    with pytest.raises(Bitrix24AmbiguousWriteError):
        client.create_contact({"NAME": "Plain", "PHONE": [{"VALUE": "79135550000"}]})
    assert len(bitrix24_fresh.portal.contacts) == 1  # it did commit: a blind retry would duplicate it

    bitrix24_fresh.inject("commit_then_timeout", method="crm.contact.add", count=1, seconds=1.5)
    first = client.create_contact_once("+7 913 555-11-22", {"NAME": "Once"})
    again = client.create_contact_once("89135551122", {"NAME": "Once"})
    assert first == again
    holders = [
        c
        for c in bitrix24_fresh.portal.contacts.values()
        if any(p["VALUE"] == "79135551122" for p in c["PHONE"])
    ]
    assert len(holders) == 1


def test_concurrent_create_once_makes_one_contact(
    bitrix24_fresh: Bitrix24Simulator, make_bitrix24_client: MakeClient
) -> None:
    clients = [make_bitrix24_client("webhook") for _ in range(4)]
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda c=c: results.append(c.create_contact_once("79136660000", {"NAME": "Race"}))
        )
        for c in clients
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(set(results)) == 1 and len(results) == 4
    assert len(bitrix24_fresh.portal.contacts) == 1


def test_contacts_carry_existing_userfields_only(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_webhook_client: Bitrix24Client
) -> None:
    """Reconciliation creates its userfields (tasks/reconcile/fields.py); the client then reads them."""
    client = bitrix24_webhook_client
    field = {"FIELD_NAME": "RD_ACCOUNT", "USER_TYPE_ID": "string"}
    assert int(client.call("crm.contact.userfield.add", {"fields": field})) > 0
    contact_id = client.create_contact(
        {"NAME": "UF", "UF_CRM_RD_ACCOUNT": "A-1", "UF_CRM_RD_MISSING": "y", "IGNORED_FIELD": "x"}
    )
    contact = client.get_contact(contact_id)
    assert contact.userfields == {"UF_CRM_RD_ACCOUNT": "A-1"} and "IGNORED_FIELD" not in contact.model_dump()


def test_timeline_comment_and_get_contacts(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_webhook_client: Bitrix24Client
) -> None:
    client = bitrix24_webhook_client
    ids = _seed(client, 3, prefix="7903")
    comment = client.add_timeline_comment(ids[1], "Subscriber blocked")
    assert comment > 0 and bitrix24_fresh.portal.timeline[-1]["ENTITY_ID"] == ids[1]
    contacts = client.get_contacts([ids[2], 424242, ids[0]])
    assert [c.ID for c in contacts] == [ids[2], ids[0]]
    assert contacts[0].PHONE[0].VALUE == "79030000002"


def test_crm_chat_fallback_with_webhook(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_webhook_client: Bitrix24Client
) -> None:
    client = bitrix24_webhook_client
    contact_id = client.create_contact({"NAME": "Chat"})
    chat_id = client.create_crm_chat(contact_id, "Subscriber 79131234567", users=[5])
    message_id = client.post_chat_message(chat_id, "[b]hello[/b]")
    chat = next(c for c in bitrix24_fresh.chats() if c["ID"] == chat_id)
    assert (
        chat["ENTITY_TYPE"] == "CRM" and chat["ENTITY_ID"] == f"CONTACT|{contact_id}" and 5 in chat["USERS"]
    )
    assert chat["messages"][-1]["id"] == message_id and chat["messages"][-1]["text"] == "[b]hello[/b]"
