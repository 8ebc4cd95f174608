"""Bitrix24 wire models: the shapes the portal really sends ([] for empty maps, string ids, forms)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.bitrix24 import (
    B24Envelope,
    BatchSection,
    ConnectorEvent,
    Contact,
    DeliveryStatus,
    OAuthToken,
    SendMessagesResult,
    UserFieldSpec,
    unflatten_form,
)


def test_envelope_keeps_time_and_absent_next() -> None:
    env = B24Envelope.model_validate(
        {
            "result": [],
            "total": 0,
            "time": {"start": 1.0, "finish": 2.0, "operating": 0.5, "operating_reset_at": 9},
        }
    )
    assert env.next is None and env.total == 0
    assert env.time is not None and env.time.operating == 0.5 and env.time.operating_reset_at == 9


def test_batch_section_tolerates_empty_lists_and_list_results() -> None:
    section = BatchSection.model_validate(
        {
            "result": [5, {"ID": "1"}],
            "result_error": [],
            "result_total": [],
            "result_next": [],
            "result_time": [],
        }
    )
    assert section.result == {"0": 5, "1": {"ID": "1"}}
    assert section.result_error == {} and section.result_next == {}


def test_contact_parses_string_ids_and_keeps_userfields() -> None:
    contact = Contact.model_validate(
        {
            "ID": "12",
            "ASSIGNED_BY_ID": "1",
            "PHONE": [{"ID": "3", "VALUE": "79131234567", "VALUE_TYPE": "WORK", "TYPE_ID": "PHONE"}],
            "UF_CRM_ACCOUNT": "55",
        }
    )
    assert contact.ID == 12 and contact.PHONE[0].ID == 3
    assert contact.userfields == {"UF_CRM_ACCOUNT": "55"}


@pytest.mark.parametrize("name", ["account", "UF_ACCOUNT", "UF_CRM_ACCOUNT", "uf_crm_account"])
def test_userfield_name_gets_forced_prefix(name: str) -> None:
    assert UserFieldSpec(FIELD_NAME=name).FIELD_NAME == "UF_CRM_ACCOUNT"


def test_userfield_name_rejects_bad_characters() -> None:
    with pytest.raises(ValidationError, match="FIELD_NAME"):
        UserFieldSpec(FIELD_NAME="счёт-1")


def test_oauth_token_repr_hides_tokens() -> None:
    token = OAuthToken(access_token="SECRET-A", refresh_token="SECRET-R", client_endpoint="https://p/rest/")
    assert "SECRET" not in repr(token) and "SECRET" not in str(token)


def test_send_messages_result_exposes_session_chat_id() -> None:
    result = SendMessagesResult.model_validate(
        {"SUCCESS": True, "DATA": {"RESULT": [{"SUCCESS": True, "session": {"ID": "4", "CHAT_ID": "77"}}]}}
    )
    assert result.DATA.RESULT[0].session is not None and result.DATA.RESULT[0].session.CHAT_ID == 77


def test_delivery_status_message_ids_always_a_list() -> None:
    status = DeliveryStatus.model_validate(
        {"im": {"chat_id": "5", "message_id": 9}, "message": {"id": 123, "date": 1}, "chat": {"id": 44}}
    )
    assert status.to_wire()["message"]["id"] == ["123"]
    assert status.to_wire()["chat"]["id"] == "44"


FORM = (
    "event=ONIMCONNECTORMESSAGEADD&event_handler_id=7&data%5BCONNECTOR%5D=rdb24&data%5BLINE%5D=1"
    "&data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bchat_id%5D=15&data%5BMESSAGES%5D%5B0%5D%5Bim%5D%5Bmessage_id%5D=99"
    "&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Buser_id%5D=1"
    "&data%5BMESSAGES%5D%5B0%5D%5Bmessage%5D%5Btext%5D=%5Bb%5DOp%3A%5B%2Fb%5D+hi"
    "&data%5BMESSAGES%5D%5B0%5D%5Bchat%5D%5Bid%5D=ext-1&ts=1700000000"
    "&auth%5Bapplication_token%5D=tok&auth%5Bdomain%5D=p.bitrix24.ru"
)


def test_connector_event_from_bracket_form() -> None:
    event = ConnectorEvent.from_form(FORM.encode())
    message = event.data.MESSAGES[0]
    assert event.event == "ONIMCONNECTORMESSAGEADD" and event.event_handler_id == 7
    assert (message.im.chat_id, message.im.message_id, message.chat.id) == (15, 99, "ext-1")
    assert message.message.text == "[b]Op:[/b] hi"
    assert event.auth.application_token == "tok" and "tok" not in repr(event.auth)


def test_unflatten_rejects_conflicting_keys() -> None:
    with pytest.raises(ValueError, match="conflicts"):
        unflatten_form([("a", "1"), ("a[b]", "2")])
