"""Flow payloads: each step's result is the next step's payload, and bad input names its field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.flows import (
    FindOrCreateContactPayload,
    FindOrCreateContactResult,
    LookupAccountResult,
    PostToChatPayload,
    SubscriberMessage,
)

MESSAGE = {"message_id": "MESSAGES_IN_SK_SB:0:42", "abonent_id": 1574870, "phone": 79308312222, "text": "hi"}


def test_each_result_is_the_next_payload() -> None:
    lookup = LookupAccountResult(phone="+7 930 831-22-22", abonent_id=1574870, account=None, message=MESSAGE)
    contact_payload = FindOrCreateContactPayload.model_validate(lookup.model_dump(mode="json"))
    result = FindOrCreateContactResult(**contact_payload.model_dump(), contact_id=9, created=True)
    post = PostToChatPayload.model_validate(result.model_dump(mode="json"))
    assert post.message.phone == "79308312222" and post.contact_id == 9 and post.account is None


def test_bad_phone_and_unknown_fields_are_named() -> None:
    with pytest.raises(ValidationError) as caught:
        SubscriberMessage.model_validate({**MESSAGE, "phone": 0, "colour": "red"})
    fields = {e["loc"][0] for e in caught.value.errors()}
    assert fields == {"phone", "colour"}


def test_post_needs_the_message() -> None:
    with pytest.raises(ValidationError, match="message"):
        PostToChatPayload.model_validate({"phone": "79308312222", "contact_id": 1})
