"""Reading the RosDomofon side: every account and every connection, in the fewest requests.

The API offers two ways to get connections (docs/rosdomofon-api.md §2.1, §2.3):

* per account, ``GET /accounts/{id}/connections`` (or ``GET /accounts/{id}``): N requests for N
  accounts;
* per service, ``GET /services/{id}/connections``: S requests, after listing the services with the
  paged ``GET /services`` (one page of up to 1000).

A service serves a whole entrance or house, so S is far smaller than N (the simulator: ~1.5 services
per 10 accounts; real operators: hundreds of services for tens of thousands of accounts). We read
``GET /accounts`` once, then per service, and fall back to per account only in the odd world where
there are more services than accounts. Total: 1 + pages + min(S, N) requests.

The per-service reads are independent GETs, so a few run at once (``concurrency``, default 8): no
rate limit is known for RosDomofon, and latency, not the server, bounds a sequential walk.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from schemas.rosdomofon import Account, Connection, Service, ServicesResponse

SERVICES_PAGE_SIZE = 1000
DEFAULT_CONCURRENCY = 8  # the client's HTTP pool keeps 10 connections


class RosDomofonReader(Protocol):
    """The part of ``clients.rosdomofon.RosDomofonAPI`` reconciliation uses."""

    def get_accounts(self) -> list[Account]: ...

    def get_all_services(self, page: int = 0, size: int = 1000) -> ServicesResponse: ...

    def get_service_connections(self, service_id: int) -> list[Connection]: ...

    def get_account_connections(self, account_id: int) -> list[Connection]: ...


class Snapshot(BaseModel):
    """All accounts and their connections at one moment, plus what reading them cost."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    accounts: list[Account]
    connections: dict[int, list[Connection]] = Field(default_factory=dict)
    requests: int = 0
    pattern: str = "per-service"

    def connections_of(self, account_id: int) -> list[Connection]:
        return self.connections.get(account_id, [])


def _account_of(connection: Connection) -> int | None:
    if connection.account is not None:
        return connection.account.id
    if connection.flat is not None and connection.flat.account_id is not None:
        return connection.flat.account_id
    return None


def list_services(api: RosDomofonReader) -> tuple[list[Service], int]:
    """Every service, following the pages until ``last``; returns the services and the request count."""
    services: list[Service] = []
    page, requests = 0, 0
    while True:
        answer = api.get_all_services(page=page, size=SERVICES_PAGE_SIZE)
        requests += 1
        services.extend(answer.content)
        if answer.last is not False or not answer.content:
            return services, requests
        page += 1


def _group(connections: Iterable[Connection], known: set[int]) -> dict[int, list[Connection]]:
    grouped: dict[int, list[Connection]] = defaultdict(list)
    seen: set[int] = set()
    for connection in connections:
        account_id = _account_of(connection)
        if account_id is None or account_id not in known or connection.id in seen:
            continue
        seen.add(connection.id)
        grouped[account_id].append(connection)
    return dict(grouped)


def _map(
    ids: Sequence[int], fetch: Callable[[int], list[Connection]], concurrency: int
) -> list[list[Connection]]:
    if concurrency <= 1 or len(ids) <= 1:
        return [fetch(item) for item in ids]
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="rd-read") as pool:
        return list(pool.map(fetch, ids))


def _per_account(
    ids: Sequence[int], fetch: Callable[[int], list[Connection]], concurrency: int
) -> dict[int, list[Connection]]:
    # The account's own endpoint may omit ``account`` on each connection: we know whose they are.
    return {
        account_id: found
        for account_id, found in zip(ids, _map(ids, fetch, concurrency), strict=True)
        if found
    }


def read_snapshot(api: RosDomofonReader, *, concurrency: int = DEFAULT_CONCURRENCY) -> Snapshot:
    """Accounts and connections with the cheaper of the two patterns (see the module docstring)."""
    accounts = api.get_accounts()
    requests = 1
    known = {a.id for a in accounts}
    services, pages = list_services(api)
    requests += pages
    if len(services) <= len(accounts):
        ids = sorted({s.id for s in services})
        fetched = _map(ids, api.get_service_connections, concurrency)
        grouped = _group((c for batch in fetched for c in batch), known)
        pattern = "per-service"
    else:
        ids = sorted(known)
        grouped = _per_account(ids, api.get_account_connections, concurrency)
        pattern = "per-account"
    requests += len(ids)
    logger.info(
        "rosdomofon read: {} accounts, {} services, {} connections in {} requests ({})",
        len(accounts),
        len(services),
        sum(len(v) for v in grouped.values()),
        requests,
        pattern,
    )
    return Snapshot(accounts=accounts, connections=grouped, requests=requests, pattern=pattern)


__all__ = ["RosDomofonReader", "Snapshot", "list_services", "read_snapshot"]
