"""The Bitrix24 client keeps its shared state under the namespace it is given, and only there."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis
from pydantic import SecretStr, ValidationError

from clients.bitrix24 import Bitrix24Client, Bitrix24Config
from sandbox.bitrix24 import Bitrix24Simulator

MakeClient = Callable[..., Bitrix24Client]
WEBHOOK = SecretStr("https://portal.example/rest/1/secret/")


def test_config_requires_a_namespace() -> None:
    with pytest.raises(ValidationError, match="key_prefix"):
        Bitrix24Config(webhook_url=WEBHOOK)  # type: ignore[call-arg]
    for bad in ("", "app:b24:", "app b24"):
        with pytest.raises(ValidationError, match="Redis namespace"):
            Bitrix24Config(key_prefix=bad, webhook_url=WEBHOOK)


def test_client_state_lives_only_under_its_namespace(
    bitrix24_sim: Bitrix24Simulator, make_bitrix24_client: MakeClient, redis_url: str
) -> None:
    namespace = f"test-{uuid.uuid4().hex[:8]}:b24"
    client = make_bitrix24_client("oauth", key_prefix=namespace)
    client.call("crm.contact.list", {"start": -1})
    bitrix24_sim.expire_access_tokens()
    client.call("crm.contact.list", {"start": -1})  # refreshes under the namespaced lock
    assert client.auth.refreshes == 1  # type: ignore[attr-defined]
    phone = f"7900{uuid.uuid4().int % 10**7:07d}"
    client.create_contact_once(phone, {"NAME": "Keys"})  # under the namespaced create lock

    store = redis.Redis.from_url(redis_url, decode_responses=True)
    portal, app = client.config.bucket_key, client.config.client_id
    assert set(store.scan_iter(match=f"{namespace}:*")) == {
        f"{namespace}:bucket:{portal}",
        f"{namespace}:operating:{portal}:used",
        f"{namespace}:oauth:{portal}:{app}",
    }
    outside = [k for k in store.scan_iter(match=f"*{portal}*") if not k.startswith(namespace + ":")]
    assert outside == [] and not store.exists(f"rdb24:b24:contact-create:{phone}")
    token = client.auth._store.load()  # type: ignore[attr-defined]
    assert token is not None and token.model_dump_json() == store.get(f"{namespace}:oauth:{portal}:{app}")
