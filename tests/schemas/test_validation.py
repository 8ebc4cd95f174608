"""The one validation formatter: every field and its problem, never the rejected value."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from schemas.validation import format_validation_errors

SECRET = "tok-3f9a-never-shown"


class Inner(BaseModel):
    count: int


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flat_id: int
    token: int
    inner: Inner


class Whole(BaseModel):
    a: int = 0

    @model_validator(mode="after")
    def _never(self) -> Whole:
        raise ValueError("the whole object is wrong")


def caught(model: type[BaseModel], data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return info.value


BAD = {"token": SECRET, "inner": {"count": "many"}, "flat_idd": 1}


def test_each_field_and_its_problem_without_the_value() -> None:
    text = format_validation_errors(caught(Payload, BAD))
    assert text == (
        "flat_id: Field required; token: Input should be a valid integer, unable to parse string as an "
        "integer; inner.count: Input should be a valid integer, unable to parse string as an integer; "
        "flat_idd: Extra inputs are not permitted"
    )
    assert SECRET not in text and "many" not in text


def test_short_form_is_the_first_problem_and_the_count() -> None:
    assert (
        format_validation_errors(caught(Payload, BAD), short=True) == "flat_id: Field required (4 problem(s))"
    )


def test_limit_keeps_the_first_and_counts_the_rest() -> None:
    text = format_validation_errors(caught(Payload, BAD), limit=2)
    assert text.startswith("flat_id: Field required; token: ") and text.endswith("; and 2 more")
    assert format_validation_errors(caught(Payload, BAD), limit=4) == format_validation_errors(
        caught(Payload, BAD)
    )


def test_an_error_without_location_is_named_by_the_root() -> None:
    assert format_validation_errors(caught(Whole, {}), root="settings") == (
        "settings: Value error, the whole object is wrong"
    )


def test_a_plain_error_list_is_accepted() -> None:
    # FastAPI's RequestValidationError.errors() is such a list, without the ValidationError around it.
    errors = [{"loc": ("path", "account_id"), "msg": "Input should be a valid integer", "input": SECRET}]
    assert (
        format_validation_errors(errors, root="request") == "path.account_id: Input should be a valid integer"
    )
    assert format_validation_errors([], root="request") == "request: invalid"
