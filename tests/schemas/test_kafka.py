from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas.kafka import KafkaIncomingMessage, KafkaOutgoingMessage, SignUpEvent

# docs/rosdomofon-api.md §4, the real MESSAGES_IN sample ([DC:arch]).
INCOMING_SAMPLE = (
    '{"fromAbonent":{"id":1574870,"phone":79308312222,"companyId":1292,"restrictionPushTokenIds":[]},'
    '"channel":"support","message":null,"deliveryMethod":null,"toAbonents":null,"broadcast":false,'
    '"waitResponse":true,"localizedPush":{"message":"Здравствуйте, домофон не работает","messageKey":null,'
    '"messageArgs":null}}'
)

# docs/rosdomofon-api.md §4, the real sign-up sample's fields ([DC:arch]).
SIGNUP_SAMPLE = {
    "id": 566836,
    "abonent": {"id": 1574870, "phone": 79308312222},
    "address": {
        "country": {"shortName": "RU", "name": "Россия"},
        "city": "Чебоксары",
        "street": {"id": 11, "name": "Академика РАН", "codeKladr": "2100000100000", "codeFias": "abc"},
        "house": {"id": 12, "number": "11", "block": None, "building": None, "housing": None},
    },
    "application": {"id": 3, "name": "rd_android", "provider": "google", "companyId": 1292},
    "virtual": False,
    "timeZone": "Europe/Moscow +03:00",
    "offerSigned": True,
    "contractNumber": None,
    "status": "UNPROCESSED",
    "createdAt": 1764151234567,
    "uid": "0b7c6f0e-5a7e-4a53-9d0a-3c2e8d1b9f10",
}


def test_incoming_sample_text_comes_from_localized_push() -> None:
    msg = KafkaIncomingMessage.model_validate_json(INCOMING_SAMPLE)
    assert msg.message is None
    assert msg.text == "Здравствуйте, домофон не работает"
    assert msg.from_abonent.id == 1574870
    assert msg.from_abonent.phone == 79308312222
    assert msg.from_abonent.company_id == 1292
    assert msg.wait_response is True


def test_incoming_sample_round_trips() -> None:
    msg = KafkaIncomingMessage.model_validate_json(INCOMING_SAMPLE)
    assert msg.model_dump(mode="json", by_alias=True, exclude_unset=True) == json.loads(INCOMING_SAMPLE)


def test_text_prefers_message_when_set() -> None:
    data = json.loads(INCOMING_SAMPLE)
    data["message"] = "direct"
    assert KafkaIncomingMessage.model_validate(data).text == "direct"
    data["message"], data["localizedPush"] = None, None
    assert KafkaIncomingMessage.model_validate(data).text is None


def test_incoming_keeps_unknown_fields() -> None:
    data = {**json.loads(INCOMING_SAMPLE), "traceId": "t-1"}
    assert KafkaIncomingMessage.model_validate(data).model_extra == {"traceId": "t-1"}


@pytest.mark.parametrize("field", ["fromAbonent"])
def test_incoming_missing_sender_is_named(field: str) -> None:
    data = json.loads(INCOMING_SAMPLE)
    del data[field]
    with pytest.raises(ValidationError) as exc:
        KafkaIncomingMessage.model_validate(data)
    assert field in str(exc.value)


def test_outgoing_has_the_exact_upstream_shape() -> None:
    out = KafkaOutgoingMessage.to_subscriber(1574870, "+7 930 831-22-22", "Ответ оператора", company_id=1292)
    assert json.loads(out.to_json_bytes()) == {
        "channel": "support",
        "deliveryMethod": "PUSH",
        "fromAbonent": {"id": 0, "phone": 0, "companyId": None, "restrictionPushTokenIds": []},
        "message": "Ответ оператора",
        "toAbonents": [{"companyId": 1292, "id": 1574870, "phone": 79308312222}],
        "localizedPush": None,
    }
    assert "Ответ оператора".encode() in out.to_json_bytes()  # non-ASCII kept as-is


def test_outgoing_needs_a_recipient() -> None:
    with pytest.raises(ValidationError) as exc:
        KafkaOutgoingMessage(message="x", to_abonents=[])
    assert "to_abonents" in str(exc.value)


def test_signup_sample_round_trips() -> None:
    event = SignUpEvent.model_validate(SIGNUP_SAMPLE)
    assert event.id == 566836
    assert event.abonent.phone == 79308312222
    assert event.address.flat is None
    assert event.address.house.number == "11"
    assert event.application.name == "rd_android"
    assert event.status == "UNPROCESSED"
    assert event.model_dump(mode="json", by_alias=True, exclude_unset=True) == SIGNUP_SAMPLE


@pytest.mark.parametrize("field", ["id", "abonent", "status"])
def test_signup_missing_required_field_is_named(field: str) -> None:
    data = {k: v for k, v in SIGNUP_SAMPLE.items() if k != field}
    with pytest.raises(ValidationError) as exc:
        SignUpEvent.model_validate(data)
    assert field in str(exc.value)
