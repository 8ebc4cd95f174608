"""A deterministic world: the same ``accounts`` and ``seed`` always give the same ids, phones and flats.

Shape: one operator company (``company`` short name) and a second company that only appears as a
service's licensee, a handful of houses in one city, entrances with main and additional flat
ranges, one or two services per entrance, and for each account an owner (phone ``79XXXXXXXXX``),
a flat in some entrance and connections of that flat to the entrance's services (a few blocked).
"""

from __future__ import annotations

import random
import uuid

from sandbox.rosdomofon.state import (
    Account,
    Company,
    Connection,
    Entrance,
    Flat,
    FlatRange,
    Service,
    SignUp,
    World,
    now_ms,
)

CITY = "Чебоксары"
STREETS = ["Академика РАН", "Ленина", "Гагарина", "Мира", "Садовая"]
SERVICE_TYPES = [("HardwareIntercom", 60.0), ("VideoSurveillance", 90.0), ("Gate", 30.0), ("HouseChat", 0.0)]
FLATS_PER_ENTRANCE = 40
CITY_KLADR = "21000001000"  # region 21, city 001: the first 11 digits of every street code in the city


def street_codes(street: str) -> tuple[str, str]:
    """``(codeFias, codeKladr)`` of a street: a FIAS GUID and a 17-digit KLADR code.

    Derived from the name, not drawn from the generator's random stream, so every entrance on a
    street shows the same codes and adding them left the rest of each seed's world unchanged.
    """
    fias = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fias:{CITY}/{street}"))
    kladr = f"{CITY_KLADR}{STREETS.index(street) + 1:04d}00"
    return fias, kladr


def generate(world: World, *, accounts: int, seed: int, company: str) -> World:
    rng = random.Random(seed)
    main = Company(id=1000 + seed % 1000, short_name=company, name=f"ООО {company}", licensee_short=company)
    world.companies[main.id] = main
    other = Company(id=main.id + 1, short_name="Video_SB", name="ООО Видео", licensee_short="Video_SB")
    world.companies[other.id] = other

    entrance_count = max(1, (accounts + 9) // 10)
    for n in range(entrance_count):
        _add_entrance(world, rng, n)
    entrances = list(world.entrances.values())
    for entrance in entrances:
        _add_services(world, rng, entrance, main.id)

    used_phones: set[int] = set()
    for n in range(accounts):
        phone = _unique_phone(rng, used_phones)
        owner = world.add_abonent(phone, main.id)
        account = Account(
            id=10_000 + n,
            number=f"{seed % 100:02d}{n:08d}",
            owner_id=owner.id,
            company_id=main.id,
            balance=round(rng.uniform(-200, 1500), 2),
        )
        world.accounts[account.id] = account
        entrance = entrances[n % len(entrances)]
        flat = Flat(
            id=20_000 + n,
            flat_number=str(entrance.flat_start + (n // len(entrances)) % FLATS_PER_ENTRANCE),
            entrance_id=entrance.id,
            owner_id=owner.id,
            account_id=account.id,
        )
        world.flats[flat.id] = flat
        for service in world.services.values():
            if entrance.id in service.entrance_ids:
                connection = Connection(
                    id=world.next_id(),
                    service_id=service.id,
                    flat_id=flat.id,
                    account_id=account.id,
                    blocked=rng.random() < 0.1,
                    tariff=service.tariff,
                )
                world.connections[connection.id] = connection
        if n % 4 == 0:
            world.record_message(owner.id, "support", f"Здравствуйте! Вопрос по счёту {account.number}",
                                 incoming=True, source="seed")  # fmt: skip
            world.record_message(owner.id, "support", "Добрый день, уточняем.", incoming=False, source="seed")
    for n in range(max(1, accounts // 5)):
        _add_signup(world, rng, main.id, entrances[n % len(entrances)], used_phones, n)
    return world


def _unique_phone(rng: random.Random, used: set[int]) -> int:
    while True:
        phone = 79_000_000_000 + rng.randrange(100_000_000, 999_999_999)
        if phone not in used:
            used.add(phone)
            return phone


def _add_entrance(world: World, rng: random.Random, n: int) -> None:
    street = STREETS[n // 3 % len(STREETS)]
    house = str(1 + n // 3 * 2 + (n // (3 * len(STREETS))) * 20)
    entrance_no = n % 3 + 1
    start = (entrance_no - 1) * FLATS_PER_ENTRANCE + 1
    extra: list[FlatRange] = []
    if rng.random() < 0.3:
        extra.append(FlatRange(id=3000 + n, flat_start=500 + n * 10, flat_end=505 + n * 10))
    fias, kladr = street_codes(street)
    entrance = Entrance(
        id=100 + n,
        number=str(entrance_no),
        city=CITY,
        street_id=200 + STREETS.index(street),
        street=street,
        house_id=400 + n // 3,
        house=house,
        flat_start=start,
        flat_end=start + FLATS_PER_ENTRANCE - 1,
        additional_ranges=extra,
        rda_uid=f"rda-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}",
        camera_id=7000 + n,
        street_fias=fias,
        street_kladr=kladr,
        intercom_index=str(entrance_no),
    )
    world.entrances[entrance.id] = entrance


def _add_services(world: World, rng: random.Random, entrance: Entrance, company_id: int) -> None:
    kinds = SERVICE_TYPES[:1] + rng.sample(SERVICE_TYPES[1:], k=rng.randint(0, 1))
    for kind, tariff in kinds:
        service = Service(
            id=world.next_id(),
            name=f"{entrance.street}, {entrance.house}",
            type=kind,
            company_id=company_id,
            custom_name=f"{kind} {entrance.street} {entrance.house}/{entrance.number}",
            tariff=tariff,
            entrance_ids=[entrance.id],
            created_at=1_700_000_000_000 + entrance.id * 1000,
        )
        world.services[service.id] = service


def _add_signup(
    world: World, rng: random.Random, company_id: int, entrance: Entrance, used: set[int], n: int
) -> None:
    abonent = world.add_abonent(_unique_phone(rng, used), company_id)
    signup = SignUp(
        id=566_000 + n,
        abonent_id=abonent.id,
        status="UNPROCESSED",
        virtual=False,
        rejected_reason=None,
        created_at=now_ms(),
        uid=str(uuid.UUID(int=rng.getrandbits(128))),
        flat=entrance.flat_start + n if n % 2 == 0 else None,
        entrance_id=entrance.id,
    )
    world.signups[signup.id] = signup


__all__ = ["generate"]
