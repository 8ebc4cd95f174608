"""The simulators from a worker's side and a test's side: the environment that points a worker (or the
webhook receiver) at them, and reads of what they now hold (contacts, chat posts, subscribers)."""

from __future__ import annotations

from typing import Any

import requests

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon.server import RosDomofonSimulator


def rosdomofon_env(sim: RosDomofonSimulator) -> dict[str, str]:
    return {
        "ROSDOMOFON_BASE_URL": sim.url,
        "ROSDOMOFON_USERNAME": sim.username,
        "ROSDOMOFON_PASSWORD": sim.password,
        "COMPANY_SHORT_NAME": sim.company,
        "ACCOUNTS_INDEX_MIN_REFRESH": "0",
    }


# The test portals run without a rate limit; the client's shared bucket (2 req/s, as a real portal)
# would otherwise pace every flow test to two Bitrix24 calls a second.
UNTHROTTLED = {"BITRIX24_RATE": "200", "BITRIX24_BURST": "1000"}


def openlines_env(sim: Bitrix24Simulator, webhook_url: str) -> dict[str, str]:
    oauth = sim.oauth
    return {
        **UNTHROTTLED,
        "BITRIX24_CLIENT_ENDPOINT": oauth.client_endpoint,
        "BITRIX24_CLIENT_ID": oauth.client_id,
        "BITRIX24_CLIENT_SECRET": oauth.client_secret,
        "BITRIX24_ACCESS_TOKEN": oauth.access_token,
        "BITRIX24_REFRESH_TOKEN": oauth.refresh_token,
        "BITRIX24_APPLICATION_TOKEN": oauth.application_token,
        "CHAT_MODE": "auto",
        "WEBHOOK_PUBLIC_URL": webhook_url,
    }


def crm_chat_env(sim: Bitrix24Simulator) -> dict[str, str]:
    return {**UNTHROTTLED, "BITRIX24_WEBHOOK_URL": sim.webhook_url, "CHAT_MODE": "auto"}


def contacts_with_phone(sim: Bitrix24Simulator, phone: str) -> list[dict[str, Any]]:
    rows = requests.get(f"{sim.url}/_sandbox/contacts", timeout=10).json()
    digits = phone.lstrip("+")
    return [c for c in rows if any(str(p.get("VALUE", "")).lstrip("+") == digits for p in c.get("PHONE", []))]


def posts_of(sim: Bitrix24Simulator, message_id_or_text: str) -> list[dict[str, Any]]:
    """Every chat message (CRM chats and Open Lines) whose text contains ``message_id_or_text``."""
    return [
        m for chat in sim.chats() for m in chat["messages"] if message_id_or_text in str(m.get("text", ""))
    ]


def subscriber_with_account(sim: RosDomofonSimulator, index: int) -> tuple[int, int, int]:
    """(abonent id, phone, account id) of the ``index``-th generated account's owner."""
    with sim.world.lock:
        account = sorted(sim.world.accounts.values(), key=lambda a: a.id)[index]
        owner = sim.world.abonents[account.owner_id]
        return owner.id, owner.phone, account.id


def subscriber_without_account(sim: RosDomofonSimulator, phone: int) -> tuple[int, int]:
    with sim.world.lock:
        company_id = next(iter(sim.world.companies))
        abonent = sim.world.add_abonent(phone, company_id)
        return abonent.id, abonent.phone


__all__ = [
    "UNTHROTTLED",
    "contacts_with_phone",
    "crm_chat_env",
    "openlines_env",
    "posts_of",
    "rosdomofon_env",
    "subscriber_with_account",
    "subscriber_without_account",
]
