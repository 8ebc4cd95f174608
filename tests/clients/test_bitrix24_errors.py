"""Every Bitrix24 error class, produced by a real answer of the simulator (or a real socket failure)."""

from __future__ import annotations

import inspect
import pickle
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from loguru import logger

from clients import errors as categories
from clients.bitrix24 import (
    Bitrix24AccessError,
    Bitrix24AmbiguousWriteError,
    Bitrix24AuthError,
    Bitrix24Client,
    Bitrix24Config,
    Bitrix24ConnectError,
    Bitrix24Error,
    Bitrix24InputError,
    Bitrix24NotFoundError,
    Bitrix24OperationTimeError,
    Bitrix24OverloadError,
    Bitrix24RateLimitedError,
    Bitrix24ServerError,
)
from clients.bitrix24.transport import translate
from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.stack.embedded import free_port
from tests.support.bitrix24_fixtures import KEY_PREFIX

MakeClient = Callable[..., Bitrix24Client]


class NoLimiter:
    """Lets a test provoke the portal's own limit."""

    def acquire(self, cost: int = 1) -> float:
        return 0.0


@pytest.fixture
def webhook(make_bitrix24_client: MakeClient) -> Bitrix24Client:
    return make_bitrix24_client("webhook", rate_limit_retries=0)


def test_query_limit_from_the_real_bucket(bitrix24_sim: Bitrix24Simulator, webhook: Bitrix24Client) -> None:
    bitrix24_sim.configure(rate_limit=True, rate=0.5, burst=3)
    webhook.limiter = NoLimiter()
    with pytest.raises(Bitrix24RateLimitedError) as caught:
        for _ in range(10):
            webhook.call("crm.contact.list")
    assert caught.value.status == 503 and caught.value.code == "QUERY_LIMIT_EXCEEDED"
    assert isinstance(caught.value, categories.RateLimitedError)


@pytest.mark.parametrize("status", [200, 503])
def test_query_limit_detected_by_code_whatever_the_status(
    bitrix24_sim: Bitrix24Simulator, webhook: Bitrix24Client, status: int
) -> None:
    bitrix24_sim.inject(
        "error", status=status, code="Query_Limit_Exceeded", description="Too many requests", count=1
    )
    with pytest.raises(Bitrix24RateLimitedError):
        webhook.call("crm.contact.list")


def test_rate_limited_call_is_retried_by_the_client(
    bitrix24_sim: Bitrix24Simulator, make_bitrix24_client: MakeClient
) -> None:
    client = make_bitrix24_client("webhook", rate_limit_retries=2)
    bitrix24_sim.inject(
        "error", status=503, code="QUERY_LIMIT_EXCEEDED", description="Too many requests", count=1
    )
    assert client.call("crm.contact.list") is not None
    assert client.stats.rate_limited == 1


def test_operation_time_limit_parks_only_that_method(
    bitrix24_sim: Bitrix24Simulator, webhook: Bitrix24Client
) -> None:
    bitrix24_sim.inject("operating", method="crm.contact.list", seconds=1000)
    with pytest.raises(Bitrix24OperationTimeError) as caught:
        webhook.call("crm.contact.list")
    assert caught.value.status == 429 and caught.value.retry_after and caught.value.retry_after > 0
    before = bitrix24_sim.portal.summary()["counts"].get("crm.contact.list", 0)
    with pytest.raises(Bitrix24OperationTimeError):
        webhook.call("crm.contact.list")  # parked client-side: no request reaches the portal
    assert bitrix24_sim.portal.summary()["counts"].get("crm.contact.list", 0) == before
    assert webhook.call("crm.duplicate.findbycomm", {"type": "PHONE", "values": ["79990000000"]}) == []


def test_spent_operating_time_parks_before_any_429(
    bitrix24_sim: Bitrix24Simulator, make_bitrix24_client: MakeClient
) -> None:
    client = make_bitrix24_client("webhook", operation_time_limit=5)
    bitrix24_sim.configure(operation_time_limit=100)
    bitrix24_sim.inject("operating", method="crm.contact.list", seconds=6)
    refusals = len([c for c in bitrix24_sim.portal.calls if c["status"] == 429])
    client.call("crm.contact.list")  # the portal still answers, but reports 6 s spent
    with pytest.raises(Bitrix24OperationTimeError) as caught:
        client.call("crm.contact.list")
    assert caught.value.retry_after and 0 < caught.value.retry_after <= 600
    assert len([c for c in bitrix24_sim.portal.calls if c["status"] == 429]) == refusals


def test_overload_is_do_not_retry(bitrix24_sim: Bitrix24Simulator, webhook: Bitrix24Client) -> None:
    bitrix24_sim.inject("error", status=503, code="OVERLOAD_LIMIT", description="blocked", count=1)
    with pytest.raises(Bitrix24OverloadError) as caught:
        webhook.call("crm.contact.list")
    assert isinstance(caught.value, categories.DoNotRetryError)


def test_bad_webhook_secret_is_reauthenticate(
    bitrix24_sim: Bitrix24Simulator, make_bitrix24_client: MakeClient
) -> None:
    bad = bitrix24_sim.webhook_url.replace(bitrix24_sim.portal.webhook_secret, "wrongsecret")
    client = make_bitrix24_client("webhook", webhook_url=bad)
    with pytest.raises(Bitrix24AuthError) as caught:
        client.call("crm.contact.list")
    assert caught.value.code == "NO_AUTH_FOUND" and caught.value.status == 401
    assert "wrongsecret" not in str(caught.value)


def test_webhook_cannot_call_connector_methods(webhook: Bitrix24Client) -> None:
    with pytest.raises(Bitrix24AccessError) as caught:
        webhook.register_connector("rdb24", "RosDomofon", "https://example.org/ui")
    assert caught.value.code == "WRONG_AUTH_TYPE" and caught.value.status == 403


@pytest.mark.parametrize(
    ("status", "code"), [(403, "insufficient_scope"), (403, "ACCESS_DENIED"), (401, "INVALID_CREDENTIALS")]
)
def test_access_codes_are_do_not_retry(
    bitrix24_sim: Bitrix24Simulator, webhook: Bitrix24Client, status: int, code: str
) -> None:
    bitrix24_sim.inject("error", status=status, code=code, description="denied", count=1)
    with pytest.raises(Bitrix24AccessError):
        webhook.call("crm.contact.list")


def test_not_found_method_and_record(webhook: Bitrix24Client) -> None:
    with pytest.raises(Bitrix24NotFoundError) as method:
        webhook.call("crm.contact.nosuchthing")
    assert method.value.code == "ERROR_METHOD_NOT_FOUND" and method.value.status == 404
    with pytest.raises(Bitrix24NotFoundError) as record:
        webhook.get_contact(987654)
    assert record.value.code is None and record.value.body["error_description"] == "Not found"
    assert isinstance(record.value, categories.NotFoundError)


def test_invalid_input_errors(webhook: Bitrix24Client) -> None:
    with pytest.raises(Bitrix24InputError) as empty_code:
        webhook.call("crm.contact.get", {"id": "abc"})
    assert not isinstance(empty_code.value, Bitrix24NotFoundError)
    assert empty_code.value.status == 400 and empty_code.value.code is None
    with pytest.raises(Bitrix24InputError) as core:
        webhook.call(
            "crm.contact.userfield.add", {"fields": {"FIELD_NAME": "bad-name!", "USER_TYPE_ID": "string"}}
        )
    assert core.value.code == "ERROR_CORE"


def test_server_error_on_read_is_retry_later(
    bitrix24_sim: Bitrix24Simulator, webhook: Bitrix24Client
) -> None:
    bitrix24_sim.inject("error", status=500, code="", method="crm.contact.list", count=1)
    with pytest.raises(Bitrix24ServerError) as caught:
        webhook.call("crm.contact.list")
    assert isinstance(caught.value, categories.RetryLaterError)
    assert webhook.call("crm.contact.list") is not None  # only the next call was faulty


def test_server_error_on_write_is_ambiguous(bitrix24_sim: Bitrix24Simulator, webhook: Bitrix24Client) -> None:
    bitrix24_sim.inject("error", status=502, code="", method="crm.contact.add", count=1)
    with pytest.raises(Bitrix24AmbiguousWriteError) as caught:
        webhook.create_contact({"NAME": "Ambiguous"})
    assert isinstance(caught.value, categories.LookUpFirstError)


def test_timeouts_split_by_read_and_write(
    bitrix24_sim: Bitrix24Simulator, make_bitrix24_client: MakeClient
) -> None:
    client = make_bitrix24_client("webhook", timeout=0.4)
    bitrix24_sim.inject("latency", seconds=1.5, method="crm.contact.list", count=1)
    with pytest.raises(Bitrix24ServerError):
        client.call("crm.contact.list")
    bitrix24_sim.inject("commit_then_timeout", seconds=1.5, method="crm.contact.add", count=1)
    with pytest.raises(Bitrix24AmbiguousWriteError):
        client.create_contact({"NAME": "Timeout"})


def test_moved_portal_is_followed_without_losing_the_write(
    bitrix24_fresh: Bitrix24Simulator, webhook: Bitrix24Client
) -> None:
    new_origin = f"http://localhost:{bitrix24_fresh.port}"
    bitrix24_fresh.inject("redirect", location=new_origin, count=1)
    contact_id = webhook.create_contact({"NAME": "Moved"})
    assert webhook.get_contact(contact_id).NAME == "Moved" and len(bitrix24_fresh.portal.contacts) == 1
    hosts = [c["host"] for c in bitrix24_fresh.portal.calls if c["status"] == 200]
    assert hosts == [f"localhost:{bitrix24_fresh.port}"] * 2  # the client stays on the new host


def test_connection_refused_is_connect_error() -> None:
    port = free_port()
    config = Bitrix24Config(
        key_prefix=KEY_PREFIX, webhook_url=f"http://127.0.0.1:{port}/rest/1/topsecret/", timeout=1
    )
    with Bitrix24Client(config) as client, pytest.raises(Bitrix24ConnectError) as caught:
        client.create_contact({"NAME": "x"})
    assert isinstance(caught.value, categories.RetryLaterError)
    assert "topsecret" not in str(caught.value)


def _request_exception_classes() -> list[type[requests.RequestException]]:
    found = []
    for _, obj in inspect.getmembers(requests.exceptions, inspect.isclass):
        if issubclass(obj, requests.RequestException):
            found.append(obj)
    return found


@pytest.mark.parametrize("write", [False, True])
def test_every_requests_exception_is_translated(write: bool) -> None:
    classes = _request_exception_classes()
    assert len(classes) > 15
    allowed = (
        categories.RetryLaterError,
        categories.LookUpFirstError,
        categories.FixInputError,
    )
    for cls in classes:
        text = "failed for http://portal/rest/1/s3cr3tvalue/crm.contact.add.json?auth=tok3n"
        exc = cls(text, text, 0) if issubclass(cls, ValueError) else cls(text)
        error = translate(exc, "crm.contact.add", write=write, secrets=("tok3n",))
        assert isinstance(error, Bitrix24Error) and isinstance(error, allowed), cls
        assert "s3cr3tvalue" not in str(error) and "tok3n" not in str(error), cls


def test_errors_pickle_with_their_class() -> None:
    error = Bitrix24RateLimitedError(
        "x", status=503, code="QUERY_LIMIT_EXCEEDED", body={"a": 1}, retry_after=2
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is Bitrix24RateLimitedError and copy.retry_after == 2 and copy.body == {"a": 1}


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG")
    yield lines
    logger.remove(sink)


def test_secrets_never_in_errors_or_logs(
    bitrix24_sim: Bitrix24Simulator, make_bitrix24_client: MakeClient, captured_logs: list[str]
) -> None:
    webhook = make_bitrix24_client("webhook", timeout=0.3)
    oauth = make_bitrix24_client("oauth", timeout=0.3)
    secrets = [bitrix24_sim.portal.webhook_secret, bitrix24_sim.oauth.client_secret]
    bitrix24_sim.inject("latency", seconds=1.0, count=2)
    texts = []
    for client in (webhook, oauth):
        with pytest.raises(Bitrix24Error) as caught:
            client.create_contact({"NAME": "x"})
        texts += [str(caught.value), repr(caught.value), str(caught.value.body), repr(caught.value.__cause__)]
        secrets += [s for s in client.auth.secrets() if s]
    bitrix24_sim.expire_access_tokens()
    time.sleep(1.1)  # let the injected latency calls finish on the server side
    oauth.call("crm.contact.list")  # refresh happens and is logged
    blob = "\n".join(texts + captured_logs)
    for secret in secrets:
        assert secret not in blob
