"""Phone -> account index: refresh, lookup and single-flight refresh on a miss, on a real Redis."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import redis

from schemas.rosdomofon import Account
from tasks.state import accounts_index


def _account(account_id: int, phone: int, *, blocked: bool = False, owner: int | None = None) -> Account:
    return Account.model_validate(
        {
            "id": account_id,
            "number": f"LS-{account_id}",
            "owner": {"id": owner or account_id + 1000, "phone": phone},
            "company": {"id": 1292, "shortName": "SK_SB"},
            "blocked": blocked,
            "isCompanyRecurringEnabled": False,
        }
    )


@pytest.fixture
def clean_index(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    redis_client.delete(accounts_index.INDEX_KEY, accounts_index.REFRESHED_AT_KEY)
    yield redis_client
    redis_client.delete(accounts_index.INDEX_KEY, accounts_index.REFRESHED_AT_KEY)


def test_refresh_replaces_the_index_and_prefers_active_accounts(clean_index: redis.Redis) -> None:
    count = accounts_index.refresh_accounts_index(
        [_account(5, 79131112233, blocked=True), _account(9, 79131112233), _account(3, 79990000000)],
        clean_index,
    )
    assert count == 2
    ref = accounts_index.get_indexed_account(clean_index, "+7 (913) 111-22-33")
    assert ref is not None and ref.account_id == 9 and ref.number == "LS-9" and ref.abonent_id == 1009
    assert ref.company_short_name == "SK_SB" and not ref.blocked
    accounts_index.refresh_accounts_index([_account(3, 79990000000)], clean_index)
    assert accounts_index.get_indexed_account(clean_index, "79131112233") is None


def test_concurrent_misses_refresh_once(clean_index: redis.Redis) -> None:
    calls = 0
    gate = threading.Event()

    def fetch() -> list[Account]:
        nonlocal calls
        calls += 1
        gate.wait(2)  # hold the refresh so every other miss queues behind it
        return [_account(1, 79135550000)]

    results: list[object] = []

    def miss() -> None:
        results.append(accounts_index.find_account(clean_index, "79135550000", fetch, min_interval=0))

    threads = [threading.Thread(target=miss) for _ in range(6)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(timeout=20)
    assert calls == 1
    assert len(results) == 6 and all(r is not None and r.account_id == 1 for r in results)  # type: ignore[attr-defined]


def test_unknown_phone_refreshes_at_most_once_per_interval(clean_index: redis.Redis) -> None:
    calls = 0

    def fetch() -> list[Account]:
        nonlocal calls
        calls += 1
        return [_account(1, 79135550000)]

    for _ in range(5):
        assert accounts_index.find_account(clean_index, "79130000001", fetch, min_interval=60) is None
    assert calls == 1
    # A hit never refreshes.
    assert accounts_index.find_account(clean_index, "79135550000", fetch, min_interval=0) is not None
    assert calls == 1
