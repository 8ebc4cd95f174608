from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from schemas.phone import InvalidPhoneError, Phone, PhoneStr, normalize_phone


@pytest.mark.parametrize(
    "raw",
    ["+7 (913) 123-45-67", "8 913 123 45 67", "79131234567", 79131234567, "89131234567", "9131234567"],
)
def test_normalises_every_accepted_format(raw: object) -> None:
    assert normalize_phone(raw) == "79131234567"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty"),
        ("12345", "11 digits"),
        ("+1 913 123 45 67", "+7"),
        ("59131234567", "start with 7 or 8"),
        ("7913123456x", "other than digits"),
        ("791312345678", "11 digits"),
        (None, "not a phone"),
        (True, "not a phone"),
        (7.9e10, "string or an integer"),
    ],
)
def test_rejects_with_a_message_naming_the_value(raw: object, problem: str) -> None:
    with pytest.raises(InvalidPhoneError) as info:
        normalize_phone(raw)
    assert problem in str(info.value)
    assert repr(raw) in str(info.value)


def test_response_phones_are_ints_and_request_phones_are_strings() -> None:
    class Owner(BaseModel):
        phone: Phone

    class Request(BaseModel):
        phone: PhoneStr

    assert Owner(phone="+7 913 123-45-67").phone == 79131234567
    assert Request(phone=79131234567).model_dump() == {"phone": "79131234567"}
    with pytest.raises(ValidationError) as info:
        Owner(phone="abc")
    assert "phone" in str(info.value) and "'abc'" in str(info.value)


def test_redis_and_kafka_fixtures_answer(redis_client, kafka_bootstrap) -> None:
    redis_client.set("k", "v")
    assert redis_client.get("k") == "v"
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert md.brokers
