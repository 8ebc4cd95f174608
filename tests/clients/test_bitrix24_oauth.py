"""OAuth against the simulator: refresh on 401, rotation persisted, one refresh for many callers."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Callable

import pytest
import requests

from clients.bitrix24 import Bitrix24AccessError, Bitrix24Client, RedisTokenStore
from clients.bitrix24.config import token_url
from sandbox.bitrix24 import Bitrix24Simulator
from tests.support import bitrix24_processes
from tests.support.bitrix24_fixtures import config_for

MakeClient = Callable[..., Bitrix24Client]


def test_token_url_uses_server_endpoint_host() -> None:
    assert token_url(None) == "https://oauth.bitrix.info/oauth/token/"
    assert token_url("https://oauth.bitrix24.tech/rest/") == "https://oauth.bitrix24.tech/oauth/token/"
    assert token_url("http://127.0.0.1:9/oauth/token/") == "http://127.0.0.1:9/oauth/token/"


def test_refresh_on_expiry_rotates_and_persists(
    bitrix24_sim: Bitrix24Simulator, bitrix24_oauth_client: Bitrix24Client
) -> None:
    client = bitrix24_oauth_client
    store = client.auth._store  # type: ignore[attr-defined]
    assert isinstance(store, RedisTokenStore)
    first = store.load()
    assert first is not None
    client.call("crm.contact.list", {"start": -1})
    assert client.auth.refreshes == 0  # never refreshed before it is needed
    bitrix24_sim.expire_access_tokens()
    client.call("crm.contact.list", {"start": -1})
    second = store.load()
    assert client.auth.refreshes == 1 and second is not None
    assert second.refresh_token != first.refresh_token and second.access_token != first.access_token
    assert second.client_endpoint == bitrix24_sim.oauth.client_endpoint
    # The old refresh token is dead: rotation really happened on the portal.
    answer = requests.get(
        bitrix24_sim.oauth.token_url,
        params={
            "grant_type": "refresh_token",
            "client_id": bitrix24_sim.oauth.client_id,
            "client_secret": bitrix24_sim.oauth.client_secret,
            "refresh_token": first.refresh_token,
        },
        timeout=5,
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_invalid_token_also_refreshes(
    bitrix24_sim: Bitrix24Simulator, make_bitrix24_client: MakeClient
) -> None:
    _, refresh = bitrix24_sim.issue_tokens()
    client = make_bitrix24_client("oauth", access_token="not-a-token", refresh_token=refresh)
    assert isinstance(client.call("crm.contact.list", {"start": -1}), list)
    assert client.auth.refreshes == 1


def test_refresh_token_alone_is_enough(
    bitrix24_sim: Bitrix24Simulator, make_bitrix24_client: MakeClient
) -> None:
    _, refresh = bitrix24_sim.issue_tokens()
    client = make_bitrix24_client("oauth", access_token="", refresh_token=refresh)
    assert isinstance(client.call("crm.contact.list", {"start": -1}), list)
    assert client.auth.refreshes == 1


def test_dead_refresh_token_needs_reauthorization(
    bitrix24_sim: Bitrix24Simulator, make_bitrix24_client: MakeClient
) -> None:
    client = make_bitrix24_client("oauth", access_token="not-a-token", refresh_token="dead-refresh")
    with pytest.raises(Bitrix24AccessError) as caught:
        client.call("crm.contact.list")
    assert caught.value.code == "invalid_grant" and "dead-refresh" not in str(caught.value)


def test_one_refresh_for_many_threads(
    bitrix24_sim: Bitrix24Simulator, bitrix24_oauth_client: Bitrix24Client
) -> None:
    client = bitrix24_oauth_client
    client.call("crm.contact.list", {"start": -1})
    before = bitrix24_sim.portal.oauth.refreshes
    bitrix24_sim.expire_access_tokens()
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def work() -> None:
        barrier.wait(10)
        try:
            for _ in range(3):
                client.call("crm.contact.list", {"start": -1})
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert bitrix24_sim.portal.oauth.refreshes - before == 1 and client.auth.refreshes == 1


@pytest.mark.process
def test_one_refresh_across_two_processes(
    bitrix24_sim: Bitrix24Simulator, bitrix24_no_faults: Bitrix24Simulator, redis_url: str
) -> None:
    config = config_for(bitrix24_sim, "oauth")
    plain = {
        k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v)
        for k, v in config.model_dump().items()
        if v is not None
    }
    store_key = config.redis_keys.oauth_token(f"proc-{uuid.uuid4().hex[:8]}", config.client_id or "")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    go = ctx.Event()
    readies = [ctx.Event() for _ in range(2)]
    procs = [
        ctx.Process(
            target=bitrix24_processes.oauth_caller, args=(plain, redis_url, store_key, r, go, results, 4)
        )
        for r in readies
    ]
    for proc in procs:
        proc.start()
    try:
        for ready in readies:
            assert ready.wait(60), "worker process did not start"
        before = bitrix24_sim.portal.oauth.refreshes
        bitrix24_sim.expire_access_tokens()
        go.set()
        outcomes = [results.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    assert [o["errors"] for o in outcomes] == [[], []]
    assert sum(o["refreshes"] for o in outcomes) == 1
    assert bitrix24_sim.portal.oauth.refreshes - before == 1
