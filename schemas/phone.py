"""One phone rule for the whole system: Russian mobile numbers as 11 digits starting with 7.

RosDomofon sends phones as integers (``79308312222``) and wants ``create_account`` phones as an
11-digit string without a plus; Bitrix24 stores whatever it is given, so we always write the canonical
form and compare in it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_SEPARATORS = re.compile(r"[\s()\-.]")


class InvalidPhoneError(ValueError):
    """Raised for a value that is not a Russian 11-digit phone number."""


def normalize_phone(value: Any) -> str:
    """Return the canonical ``7XXXXXXXXXX`` form of ``value`` or raise :class:`InvalidPhoneError`.

    Accepts ``+7 (913) 123-45-67``, ``8 913 123 45 67``, ``79131234567`` and the int ``79131234567``.
    """
    if isinstance(value, bool) or value is None:
        raise InvalidPhoneError(f"phone {value!r} is not a phone number")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise InvalidPhoneError(f"phone {value!r} must be a string or an integer")
    digits = _SEPARATORS.sub("", text)
    if not digits:
        raise InvalidPhoneError(f"phone {value!r} is empty")
    if digits.startswith("+"):
        if not digits.startswith("+7"):
            raise InvalidPhoneError(f"phone {value!r} must have the country code +7")
        digits = digits[1:]
    if not digits.isdigit():
        raise InvalidPhoneError(f"phone {value!r} contains characters other than digits")
    if len(digits) == 10 and digits.startswith("9"):
        digits = "7" + digits
    if len(digits) != 11:
        raise InvalidPhoneError(f"phone {value!r} must have 11 digits, got {len(digits)}")
    if digits[0] == "8":
        digits = "7" + digits[1:]
    if digits[0] != "7":
        raise InvalidPhoneError(f"phone {value!r} must start with 7 or 8")
    return digits


def phone_as_int(value: Any) -> int:
    return int(normalize_phone(value))


# A phone as RosDomofon responses and Kafka carry it: an int (``79131234567``).
Phone = Annotated[int, BeforeValidator(phone_as_int)]
# A phone as RosDomofon requests want it: an 11-digit string without a plus.
PhoneStr = Annotated[str, BeforeValidator(normalize_phone), PlainSerializer(str, return_type=str)]

__all__ = ["InvalidPhoneError", "Phone", "PhoneStr", "normalize_phone", "phone_as_int"]
