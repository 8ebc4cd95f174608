"""The two simulators in this process, wired to a stack's secrets, and the counts a scenario reads.

The portal's OAuth app and webhook get the stack's distinctive secrets (so a leak is findable by a
substring search), and Open Lines mode is used (an OAuth app is configured), the product's default.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon import RosDomofonSimulator

if TYPE_CHECKING:
    from tests.faults.harness import Secrets

OPEN_LINE = "1"  # the simulated portal's one Open Line


@dataclass
class Simulators:
    rosdomofon: RosDomofonSimulator
    bitrix24: Bitrix24Simulator

    @classmethod
    def start(cls, *, company: str, accounts: int, kafka_bootstrap: str, secrets: Secrets) -> Simulators:
        rosdomofon = RosDomofonSimulator(
            accounts=accounts,
            seed=random.randrange(1, 10_000),
            company=company,
            kafka_bootstrap=kafka_bootstrap,
            password=secrets.rosdomofon_password,
        ).start()
        # Rate limit off by default: scenarios turn storms on themselves, and a 2 req/s portal would
        # make every scenario wait on the limiter instead of on the fault it injects.
        bitrix24 = Bitrix24Simulator(rate_limit=False)
        portal = bitrix24.portal
        portal.webhook_secret = secrets.bitrix24_webhook_secret
        portal.oauth.app.client_secret = secrets.bitrix24_client_secret
        portal.oauth.app.application_token = secrets.bitrix24_application_token
        return cls(rosdomofon, bitrix24.start())

    def stop(self) -> None:
        self.rosdomofon.stop()
        self.bitrix24.stop()

    def env(self) -> dict[str, str]:
        oauth = self.bitrix24.oauth
        return {
            "ROSDOMOFON_BASE_URL": self.rosdomofon.url,
            "ROSDOMOFON_USERNAME": self.rosdomofon.username,
            "ROSDOMOFON_PASSWORD": self.rosdomofon.password,
            "BITRIX24_CLIENT_ENDPOINT": oauth.client_endpoint,
            "BITRIX24_CLIENT_ID": oauth.client_id,
            "BITRIX24_CLIENT_SECRET": oauth.client_secret,
            "BITRIX24_SERVER_ENDPOINT": oauth.server_endpoint,
            "BITRIX24_ACCESS_TOKEN": oauth.access_token,
            "BITRIX24_REFRESH_TOKEN": oauth.refresh_token,
            "BITRIX24_APPLICATION_TOKEN": oauth.application_token,
            "OPENLINES_LINE_ID": OPEN_LINE,
        }

    # --- what a scenario counts -------------------------------------------------------------------
    def account_owners(self) -> list[tuple[int, str]]:
        """(abonent id, phone) of every subscriber that owns an account, in a stable order."""
        world = self.rosdomofon.world
        with world.lock:
            owners = {a.owner_id for a in world.accounts.values()}
            return sorted((i, str(world.abonents[i].phone)) for i in owners)

    def add_subscribers_without_account(self, count: int) -> list[tuple[int, str]]:
        """App users RosDomofon knows but who own no account: the flow must still post their messages."""
        world, company_id = self.rosdomofon.world, self.rosdomofon.ctx.company_id
        added = []
        with world.lock:
            while len(added) < count:
                phone = 79990000000 + random.randrange(0, 9_999_999)
                if world.abonent_by_phone(phone) is None:
                    abonent = world.add_abonent(phone, company_id)
                    added.append((abonent.id, str(abonent.phone)))
        return added

    def posted_texts(self) -> list[str]:
        """Every message text in every chat of the portal, as operators see them."""
        return [str(m.get("text", "")) for chat in self.bitrix24.chats() for m in chat["messages"]]

    def new_posted_texts(self, cursor: dict[int, int]) -> list[str]:
        """Texts posted since the last call with the same ``cursor`` (chat id -> messages seen)."""
        portal = self.bitrix24.portal
        found = []
        with portal.lock:
            for chat_id, chat in portal.chats.items():
                messages = chat["messages"]
                start = cursor.get(chat_id, 0)
                found.extend(str(m.get("text", "")) for m in messages[start:])
                cursor[chat_id] = len(messages)
        return found

    def contact_phones(self) -> Iterable[list[str]]:
        with self.bitrix24.portal.lock:
            contacts = list(self.bitrix24.portal.contacts.values())
        return [[str(row.get("VALUE", "")) for row in contact.get("PHONE") or []] for contact in contacts]

    def issued_tokens(self) -> list[str]:
        """Every access/refresh token either simulator handed out: none may appear in our output."""
        portal = self.bitrix24.portal
        with portal.lock:
            found = list(portal.oauth.access) + list(portal.oauth.refresh)
        found += list(self.rosdomofon.tokens._expires)
        return found

    def bitrix24_fault(self, kind: str, **spec: Any) -> None:
        self.bitrix24.inject(kind, **spec)

    def bitrix24_calls(self) -> dict[str, int]:
        return self.bitrix24.portal.call_counts()


__all__ = ["OPEN_LINE", "Simulators"]
