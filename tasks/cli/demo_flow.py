"""The steps of ``rdb24 demo``, against a running local stack with both simulators.

Subscribers write through the RosDomofon simulator's subscriber side (a real Kafka record in
``MESSAGES_IN_<company>``, as the RosDomofon app produces it); everything after that is the product:
ingest, the Celery chain, the Bitrix24 portal. The first subscriber also sends a picture (``imageUrl``,
served by the RosDomofon simulator), which the operator sees attached to the message. The operator's
reply, with a file attached, is typed into the Bitrix24 simulator, which delivers the Open Lines event
to our webhook receiver; the proof of the round trip (words and the file's link) is read back with our
own RosDomofon client (``GET /abonents/{id}/messages``), as an operator integration would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from schemas.phone import normalize_phone
from tasks.errors import DemoError
from tasks.flows.texts import WORD_JOINER
from tasks.settings import Settings


@dataclass
class Subscriber:
    abonent_id: int
    phone: str
    account_ids: list[int]
    text: str = ""
    chat_id: int | None = None  # the Bitrix24 chat the message reached
    chat_messages: list[dict[str, Any]] = field(default_factory=list)
    contact: dict[str, Any] | None = None
    picture_url: str | None = None
    reply: str = ""
    reply_file: str = ""
    reply_received: str = ""  # the whole text the subscriber got (words, then the file's line)
    reply_seen: bool = False


@dataclass
class Demo:
    rosdomofon_url: str
    bitrix24_url: str
    settings: Settings
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    timeout: float = 10.0
    _api: Any = None

    def _get(self, url: str) -> Any:
        response = requests.get(url, timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def _post(self, url: str, body: dict[str, Any]) -> Any:
        response = requests.post(url, json=body, timeout=self.timeout)
        if response.status_code >= 400:
            raise DemoError(f"POST {url} -> {response.status_code}: {response.text[:300]}")
        return response.json()

    def pick_subscribers(self, count: int) -> list[Subscriber]:
        rows = self._get(f"{self.rosdomofon_url}/_sandbox/subscribers")
        with_accounts = [r for r in rows if r.get("accountIds")]
        if not with_accounts:
            raise DemoError("the RosDomofon simulator has no subscriber with an account")
        return [
            Subscriber(
                abonent_id=int(r["abonentId"]), phone=normalize_phone(r["phone"]), account_ids=r["accountIds"]
            )
            for r in with_accounts[:count]
        ]

    def write(self, subscriber: Subscriber, index: int) -> dict[str, Any]:
        """The subscriber writes; the first one also sends a photo of the intercom."""
        subscriber.text = f"[demo {self.token}-{index}] Hello! The intercom at my entrance does not open."
        body: dict[str, Any] = {"text": subscriber.text}
        if index == 1:
            subscriber.picture_url = f"{self.rosdomofon_url}/_sandbox/pictures/intercom-{self.token}.png"
            body["imageUrl"] = subscriber.picture_url
        return self._post(f"{self.rosdomofon_url}/_sandbox/subscribers/{subscriber.abonent_id}/send", body)

    def chats(self) -> list[dict[str, Any]]:
        return self._get(f"{self.bitrix24_url}/_sandbox/chats")

    def find_chat(self, subscriber: Subscriber, chats: list[dict[str, Any]]) -> bool:
        """True once the subscriber's message is in a Bitrix24 chat (remembers which)."""
        for chat in chats:
            # Subscriber text is posted inert (a word joiner after each "["): compare without it.
            if any(subscriber.text in _typed(m.get("text")) for m in chat.get("messages", [])):
                subscriber.chat_id = int(chat["ID"])
                subscriber.chat_messages = list(chat["messages"])
                return True
        return False

    def find_contacts(self, subscribers: list[Subscriber]) -> None:
        contacts = self._get(f"{self.bitrix24_url}/_sandbox/contacts")
        for subscriber in subscribers:
            for contact in contacts:
                phones = {_normalized(p.get("VALUE")) for p in contact.get("PHONE") or []}
                if subscriber.phone in phones:
                    subscriber.contact = contact
                    break

    def operator_reply(self, subscriber: Subscriber) -> dict[str, Any]:
        if subscriber.chat_id is None:
            raise DemoError(f"subscriber {subscriber.abonent_id}'s message never reached a chat")
        subscriber.reply = f"[demo {self.token}] Operator here: a technician is on the way."
        subscriber.reply_file = f"instructions-{self.token}.pdf"
        return self._post(
            f"{self.bitrix24_url}/_sandbox/operator/reply",
            {
                "chat_id": subscriber.chat_id,
                "text": subscriber.reply,
                "operator_name": "Demo operator",
                "files": [{"name": subscriber.reply_file, "size": 48213}],
            },
        )

    def reply_arrived(self, subscriber: Subscriber) -> bool:
        """Read the subscriber's history through the operator API, as any integration would."""
        if self._api is None:
            from tasks.runtime.resources import build_rosdomofon_api

            self._api = build_rosdomofon_api(self.settings)
        page = self._api.get_abonent_messages(subscriber.abonent_id, channel="support", size=50)
        for m in page.content:
            text = m.message or ""
            # The words and the file's line (name and portal link) arrive in the same message.
            if not m.incoming and subscriber.reply in text and subscriber.reply_file in text:
                subscriber.reply_received = text
                subscriber.reply_seen = True
        return subscriber.reply_seen


def message_lines(message: dict[str, Any]) -> str:
    """A chat message as the demo table shows it: its text, then its attachments."""
    lines = [_typed(message.get("text"))]
    lines += [f"📎 {f.get('name')} <{f.get('url')}>" for f in message.get("files") or []]
    for block in message.get("attach") or []:
        link = block.get("LINK") if isinstance(block, dict) else None
        if isinstance(link, dict):
            lines.append(f"📎 {link.get('NAME')} <{link.get('LINK')}>")
    return "\n".join(lines)


def _typed(text: Any) -> str:
    return str(text or "").replace(WORD_JOINER, "")


def _normalized(value: Any) -> str:
    try:
        return normalize_phone(value)
    except ValueError:
        return str(value)
