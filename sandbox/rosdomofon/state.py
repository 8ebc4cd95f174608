"""The simulator's in-memory world: companies, subscribers, accounts, entrances, flats, services,
connections, message history and sign-ups, changed by the API calls.

Plain dataclasses keyed by id; one lock guards every mutation because uvicorn serves requests
and the Kafka consumer writes history from its own thread.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Company:
    id: int
    short_name: str
    name: str
    licensee_short: str


@dataclass
class Abonent:
    id: int
    phone: int
    uid: str
    company_id: int


@dataclass
class Account:
    id: int
    number: str
    owner_id: int
    company_id: int
    blocked: bool = False
    block_reason: str | None = None
    balance: float = 0.0
    paid_until: str = "2026-12-31"


@dataclass
class FlatRange:
    id: int
    flat_start: int
    flat_end: int


@dataclass
class Entrance:
    id: int
    number: str
    city: str
    street_id: int
    street: str
    house_id: int
    house: str
    flat_start: int
    flat_end: int
    additional_ranges: list[FlatRange] = field(default_factory=list)
    rda_uid: str = ""
    camera_id: int = 0
    # Strings on the wire: the upstream models declare ``codeFias``/``codeKladr`` and an intercom's
    # ``index`` (a flat adapter's ``intercomIndex``) as ``str`` and reject ints and nulls there.
    street_fias: str = ""
    street_kladr: str = ""
    intercom_index: str = "1"

    @property
    def address_string(self) -> str:
        return f"{self.city}, {self.street}, {self.house}, подъезд {self.number}"

    def has_flat(self, flat: int) -> bool:
        ranges = [(self.flat_start, self.flat_end)] + [
            (r.flat_start, r.flat_end) for r in self.additional_ranges
        ]
        return any(lo <= flat <= hi for lo, hi in ranges)


@dataclass
class Flat:
    id: int
    flat_number: str
    entrance_id: int | None
    owner_id: int | None
    account_id: int | None
    virtual: bool = False
    blocked: bool = False


@dataclass
class Service:
    id: int
    name: str
    type: str
    company_id: int
    custom_name: str
    tariff: float
    entrance_ids: list[int]
    created_at: int


@dataclass
class Connection:
    id: int
    service_id: int
    flat_id: int
    account_id: int | None
    blocked: bool = False
    tariff: float = 0.0
    currency: str = "RUB"


@dataclass
class Message:
    id: int
    abonent_id: int
    channel: str
    incoming: bool
    text: str
    date_ms: int
    source: str  # "rest", "kafka-in", "kafka-out", "seed"


@dataclass
class SignUp:
    id: int
    abonent_id: int
    status: str
    virtual: bool
    rejected_reason: str | None
    created_at: int
    uid: str
    flat: int | None
    entrance_id: int


@dataclass
class World:
    """Everything the API can see or change."""

    companies: dict[int, Company] = field(default_factory=dict)
    abonents: dict[int, Abonent] = field(default_factory=dict)
    accounts: dict[int, Account] = field(default_factory=dict)
    entrances: dict[int, Entrance] = field(default_factory=dict)
    flats: dict[int, Flat] = field(default_factory=dict)
    services: dict[int, Service] = field(default_factory=dict)
    connections: dict[int, Connection] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    signups: dict[int, SignUp] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(900_000), repr=False)

    def next_id(self) -> int:
        return next(self._ids)

    # --- lookups -----------------------------------------------------------------------------

    def abonent_by_phone(self, phone: int) -> Abonent | None:
        return next((a for a in self.abonents.values() if a.phone == phone), None)

    def account_by_ref(self, ref: str) -> Account | None:
        """``{x}`` in the block paths: an account id or a billing account number (which is unknown)."""
        if ref.isdigit() and int(ref) in self.accounts:
            return self.accounts[int(ref)]
        return next((a for a in self.accounts.values() if a.number == ref), None)

    def accounts_of(self, abonent_id: int) -> list[Account]:
        return [a for a in self.accounts.values() if a.owner_id == abonent_id]

    def flats_of_account(self, account_id: int) -> list[Flat]:
        return [f for f in self.flats.values() if f.account_id == account_id]

    def history(self, abonent_id: int, channel: str | None = None) -> list[Message]:
        """Newest first, as a chat history is read."""
        found = [
            m
            for m in self.messages
            if m.abonent_id == abonent_id and (channel is None or m.channel == channel)
        ]
        return sorted(found, key=lambda m: (m.date_ms, m.id), reverse=True)

    # --- changes -----------------------------------------------------------------------------

    def add_abonent(self, phone: int, company_id: int) -> Abonent:
        existing = self.abonent_by_phone(phone)
        if existing is not None:
            return existing
        abonent_id = self.next_id()
        abonent = Abonent(id=abonent_id, phone=phone, uid=f"ab-{abonent_id:08d}", company_id=company_id)
        self.abonents[abonent.id] = abonent
        return abonent

    def record_message(
        self, abonent_id: int, channel: str, text: str, *, incoming: bool, source: str
    ) -> Message:
        message = Message(
            id=self.next_id(),
            abonent_id=abonent_id,
            channel=channel,
            incoming=incoming,
            text=text,
            date_ms=now_ms(),
            source=source,
        )
        self.messages.append(message)
        return message


__all__ = [
    "Abonent",
    "Account",
    "Company",
    "Connection",
    "Entrance",
    "Flat",
    "FlatRange",
    "Message",
    "Service",
    "SignUp",
    "World",
    "now_ms",
]
