"""The package's public surface is exactly what others code against; every error has a category."""

from __future__ import annotations

import clients.bitrix24 as b24
from clients import errors as categories

EXPECTED = {
    "Bitrix24AccessError",
    "Bitrix24AmbiguousWriteError",
    "Bitrix24AuthError",
    "Bitrix24Client",
    "Bitrix24Config",
    "Bitrix24ConnectError",
    "Bitrix24Error",
    "Bitrix24InputError",
    "Bitrix24NotFoundError",
    "Bitrix24OperationTimeError",
    "Bitrix24OverloadError",
    "Bitrix24RateLimitedError",
    "Bitrix24ServerError",
    "CallStats",
    "MemoryTokenStore",
    "RedisTokenStore",
    "TokenStore",
    "background_requests",
    "parse_connector_event",
    "verify_application_token",
}
CATEGORIES = (
    categories.RetryLaterError,
    categories.ReauthenticateError,
    categories.FixInputError,
    categories.LookUpFirstError,
    categories.DoNotRetryError,
)


def test_exported_names() -> None:
    assert set(b24.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(b24, name)


def test_every_concrete_error_inherits_a_category() -> None:
    concrete = [getattr(b24, n) for n in EXPECTED if n.endswith("Error") and n != "Bitrix24Error"]
    for cls in concrete:
        assert issubclass(cls, b24.Bitrix24Error) and issubclass(cls, CATEGORIES), cls


def test_client_operation_names_stay_stable() -> None:
    for name in (
        "call",
        "call_raw",
        "batch",
        "scan_by_id",
        "find_contacts_by_phone",
        "get_contact",
        "get_contacts",
        "create_contact",
        "create_contact_once",
        "update_contact",
        "add_timeline_comment",
        "register_connector",
        "bind_event",
        "activate_connector",
        "send_connector_messages",
        "send_delivery_status",
        "list_open_lines",
        "create_crm_chat",
        "post_chat_message",
    ):
        assert callable(getattr(b24.Bitrix24Client, name)), name
