"""Bitrix24 REST client: webhook or OAuth auth, shared rate limit, batch, paging, CRM and Open Lines.

Public surface (everything else in the package is private)::

    Bitrix24Config, Bitrix24Client, TokenStore, MemoryTokenStore, RedisTokenStore,
    parse_connector_event, verify_application_token, and the error tree of ``errors``.
"""

from __future__ import annotations

from clients.bitrix24.client import Bitrix24Client, CallStats
from clients.bitrix24.config import Bitrix24Config
from clients.bitrix24.errors import (
    Bitrix24AccessError,
    Bitrix24AmbiguousWriteError,
    Bitrix24AuthError,
    Bitrix24ConnectError,
    Bitrix24Error,
    Bitrix24InputError,
    Bitrix24NotFoundError,
    Bitrix24OperationTimeError,
    Bitrix24OverloadError,
    Bitrix24RateLimitedError,
    Bitrix24ServerError,
)
from clients.bitrix24.events import parse_connector_event, verify_application_token
from clients.bitrix24.rate_limiter import background as background_requests
from clients.bitrix24.token_store import MemoryTokenStore, RedisTokenStore, TokenStore

__all__ = [
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
]
