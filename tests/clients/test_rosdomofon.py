"""RosDomofonAPI over real HTTP against the simulator: every method, every error class."""

from __future__ import annotations

import email.utils
import inspect
import time
from collections.abc import Callable, Iterator

import pytest
import requests
from loguru import logger
from requests import exceptions as rex

import clients.rosdomofon as rd
from clients.errors import (
    DoNotRetryError,
    FixInputError,
    IntegrationError,
    LookUpFirstError,
    NotFoundError,
    RateLimitedError,
    ReauthenticateError,
    RetryLaterError,
)
from clients.rosdomofon import RosDomofonAPI
from clients.rosdomofon.transport import _FOREIGN, error_class_for, error_from_exception, parse_retry_after
from sandbox.rosdomofon import RosDomofonSimulator
from sandbox.stack.embedded import free_port
from schemas.rosdomofon import Account, AccountInfo, Connection, FlatDetailed, Service

V1 = "/abonents-service/api/v1"


@pytest.fixture
def sim(rosdomofon_sim: RosDomofonSimulator) -> RosDomofonSimulator:
    return rosdomofon_sim


@pytest.fixture
def api(rosdomofon_api: RosDomofonAPI) -> RosDomofonAPI:
    return rosdomofon_api


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="DEBUG")
    yield lines
    logger.remove(sink)


def first_account(sim: RosDomofonSimulator):
    return next(iter(sim.world.accounts.values()))


# --- public surface -----------------------------------------------------------------------------


def test_public_surface_is_exactly_the_client_config_and_errors() -> None:
    exported = set(rd.__all__)
    errors = {n for n, c in inspect.getmembers(rd, inspect.isclass) if issubclass(c, rd.RosDomofonError)}
    assert exported == errors | {"RosDomofonAPI", "RosDomofonKafkaConfig", "DEFAULT_BASE_URL"}
    categories = (RetryLaterError, ReauthenticateError, FixInputError, LookUpFirstError, DoNotRetryError)
    for name in errors - {"RosDomofonError"}:
        assert issubclass(getattr(rd, name), categories), name
    assert issubclass(rd.RosDomofonError, IntegrationError)


def test_upstream_constructor_keeps_kafka_arguments() -> None:
    api = RosDomofonAPI(
        "user", "pw", kafka_bootstrap_servers="k:443", company_short_name="SK_SB", kafka_group_id="g",
        kafka_username="ku", kafka_password="kp", kafka_ssl_ca_cert_path="/ca.crt",
    )  # fmt: skip
    assert api.kafka is not None
    assert (api.kafka.bootstrap_servers, api.kafka.group_id, api.kafka.company_short_name) == (
        "k:443", "g", "SK_SB",
    )  # fmt: skip
    assert api.kafka_client.config.topics.messages_in == "MESSAGES_IN_SK_SB"
    assert "kp" not in repr(api.kafka) and "pw" not in repr(api)
    api.close()


# --- operations ---------------------------------------------------------------------------------


def test_authenticate(api: RosDomofonAPI, sim: RosDomofonSimulator) -> None:
    auth = api.authenticate()
    assert auth.expires_in == 3600
    assert sim.tokens.status(auth.access_token) == "valid"


def test_account_reads(api: RosDomofonAPI, sim: RosDomofonSimulator) -> None:
    accounts = api.get_accounts()
    assert len(accounts) >= 20 and all(isinstance(a, Account) for a in accounts)
    acc = first_account(sim)
    owner = sim.world.abonents[acc.owner_id]
    found = api.get_account_by_phone(f"+7 {str(owner.phone)[1:4]} {str(owner.phone)[4:]}")
    assert found is not None and found.id == acc.id
    assert api.get_account_by_phone("79990000000") is None
    info = api.get_account_info(acc.id)
    assert isinstance(info, AccountInfo) and info.number == acc.number and info.owner.id == owner.id
    assert info.connections and info.connections[0].flat.address.entrance is not None
    flats = api.get_account_flats(acc.id)
    assert [f.id for f in flats] == [f.id for f in sim.world.flats_of_account(acc.id)]
    assert all(isinstance(f, FlatDetailed) for f in flats)
    conns = api.get_account_connections(acc.id)
    assert conns and all(isinstance(c, Connection) and c.account.id == acc.id for c in conns)


def test_create_account_appears_and_block_toggles(
    api: RosDomofonAPI, sim: RosDomofonSimulator, unique: str
) -> None:
    created = api.create_account(f"N-{unique}", "8 (913) 555-12-34")
    assert created.owner.phone == 79135551234
    listed = {a.id: a for a in api.get_accounts()}
    assert listed[created.id].number == f"N-{unique}"
    assert api.block_account(f"N-{unique}") is True
    assert sim.world.accounts[created.id].blocked is True
    assert api.get_account_info(created.id).blocked is True
    assert api.unblock_account(created.id) is True
    assert sim.world.accounts[created.id].blocked is False


def test_flats_and_connections(api: RosDomofonAPI, sim: RosDomofonSimulator, unique: str) -> None:
    acc = api.create_account(f"F-{unique}", 79135550000 + int(unique[:3], 16) % 9999)
    entrance = next(iter(sim.world.entrances.values()))
    flat = api.create_flat(entrance.flat_start + 1, entrance_id=entrance.id, abonent_id=acc.owner.id)
    assert flat.owner.id == acc.owner.id and flat.address is None
    assert sim.world.flats[flat.id].entrance_id == entrance.id
    abonent_flats = api.get_abonent_flats(acc.owner.id)  # flaky upstream: GET retries absorb it
    assert flat.id in {f.id for f in abonent_flats}
    assert api.get_abonent_flats(acc.owner.id)[0].owner.id == acc.owner.id
    assert flat.id in {f.id for f in api.get_entrance_flats(entrance.id)}
    services = api.get_entrance_services(entrance.id)
    assert services and all(isinstance(s, Service) for s in services)
    assert api.get_all_services().total_elements == len(sim.world.services)
    connection = api.connect_service(services[0].id, flat.id)
    assert sim.world.connections[connection.id].flat_id == flat.id
    assert connection.id in {c.id for c in api.get_service_connections(services[0].id)}
    assert api.block_connection(connection.id) is True
    assert sim.world.connections[connection.id].blocked is True
    assert api.unblock_connection(connection.id) is True
    assert sim.world.connections[connection.id].blocked is False


def test_entrances_one_page_all_pages_and_detail(api: RosDomofonAPI, sim: RosDomofonSimulator) -> None:
    page = api.get_entrances(page=0, size=1)
    assert page.size == 1 and len(page.content) == 1 and page.total_elements == len(sim.world.entrances)
    everything = api.get_entrances(size=1, all=True)
    assert sorted(e.id for e in everything.content) == sorted(sim.world.entrances)
    entrance = next(iter(sim.world.entrances.values()))
    found = api.get_entrances(f"{entrance.city}, {entrance.street}, {entrance.house}")
    assert entrance.id in {e.id for e in found.content}
    fallback = api.get_entrances(f"{entrance.city}, , {entrance.house}")
    assert entrance.id in {e.id for e in fallback.content}
    detail = api.get_entrance(entrance.id)
    assert detail.id == entrance.id and detail.rda is not None


def test_messages_land_in_history(api: RosDomofonAPI, sim: RosDomofonSimulator, unique: str) -> None:
    acc = first_account(sim)
    results = api.send_message_to_abonent(acc.owner_id, "support", f"hello {unique}")
    assert [r.success for r in results] == [True]
    history = api.get_abonent_messages(acc.owner_id, channel="support", size=5)
    newest = history.content[0]
    assert (newest.message, newest.incoming, newest.abonent.id) == (f"hello {unique}", False, acc.owner_id)
    mixed = api.send_message([acc.owner_id, {"id": 1, "phone": 0}], channel="notification", message="n")
    assert [r.success for r in mixed] == [True, False]


def test_update_signup(api: RosDomofonAPI, sim: RosDomofonSimulator) -> None:
    signup_id = next(iter(sim.world.signups))
    assert api.update_signup(signup_id, "processed") is True
    assert sim.world.signups[signup_id].status == "PROCESSED"
    assert api.update_signup(signup_id, status="rejected", rejected_reason="no flat") is True
    assert sim.world.signups[signup_id].rejected_reason == "no flat"


def test_context_manager_closes_the_session(sim: RosDomofonSimulator) -> None:
    with RosDomofonAPI(sim.username, sim.password, base_url=sim.url) as api:
        api.get_accounts()
        pools = api._http.session.get_adapter(sim.url).poolmanager.pools
        assert len(pools) == 1
    assert len(pools) == 0


# --- errors -------------------------------------------------------------------------------------


def test_not_found(api: RosDomofonAPI) -> None:
    with pytest.raises(rd.RosDomofonNotFoundError) as exc:
        api.get_account_info(123456789)
    assert isinstance(exc.value, NotFoundError) and exc.value.status == 404
    assert "123456789 not found" in str(exc.value)


def test_invalid_request_keeps_the_server_message(api: RosDomofonAPI, sim: RosDomofonSimulator) -> None:
    with pytest.raises(rd.RosDomofonInvalidRequestError) as exc:
        api.send_message([first_account(sim).owner_id], channel="sms", message="x")
    assert exc.value.status == 400 and "channel 'sms'" in str(exc.value)
    assert isinstance(exc.value, FixInputError) and not isinstance(exc.value, NotFoundError)


def test_unprocessable_duplicate(api: RosDomofonAPI, unique: str) -> None:
    api.create_account(f"D-{unique}", "79130000001")
    with pytest.raises(rd.RosDomofonInvalidRequestError) as exc:
        api.create_account(f"D-{unique}", "79130000001")
    assert exc.value.status == 422 and "already exists" in str(exc.value)


def test_server_error_on_a_write_is_transient_and_not_repeated(
    api: RosDomofonAPI, sim: RosDomofonSimulator, unique: str
) -> None:
    api.authenticate()
    sim.calls.reset()
    sim.faults.update(fail_next=1, fail_status=503)
    with pytest.raises(rd.RosDomofonTransientError) as exc:
        api.create_account(f"T-{unique}", "79130000002")
    assert isinstance(exc.value, RetryLaterError) and exc.value.status == 503
    assert sim.calls.count("POST", f"{V1}/accounts") == 1
    assert not any(a.number == f"T-{unique}" for a in sim.world.accounts.values())


def test_reads_are_retried_until_the_budget_is_spent(api: RosDomofonAPI, sim: RosDomofonSimulator) -> None:
    api.authenticate()
    sim.calls.reset()
    sim.faults.update(fail_next=2, fail_status=502)
    assert api.get_accounts()
    assert sim.calls.count("GET", f"{V1}/accounts") == 3
    sim.faults.update(fail_next=10, fail_status=500)
    with pytest.raises(rd.RosDomofonTransientError) as exc:
        api.get_accounts()
    assert exc.value.status == 500


@pytest.mark.parametrize("method", ["get", "post"])
def test_429_surfaces_with_retry_after_seconds(
    api: RosDomofonAPI, sim: RosDomofonSimulator, unique: str, method: str
) -> None:
    api.authenticate()
    sim.calls.reset()
    sim.faults.update(rate_limit_next=1, retry_after="7")
    with pytest.raises(rd.RosDomofonRateLimitedError) as exc:
        if method == "get":
            api.get_accounts()
        else:
            api.create_account(f"R-{unique}", "79130000003")
    assert isinstance(exc.value, RateLimitedError) and isinstance(exc.value, RetryLaterError)
    assert exc.value.retry_after == 7 and exc.value.status == 429
    assert sum(sim.calls.counts().values()) == 1  # 429 is never retried underneath the caller


def test_429_retry_after_as_http_date(api: RosDomofonAPI, sim: RosDomofonSimulator) -> None:
    api.authenticate()
    sim.faults.update(rate_limit_next=1, retry_after=email.utils.formatdate(time.time() + 30, usegmt=True))
    with pytest.raises(rd.RosDomofonRateLimitedError) as exc:
        api.get_accounts()
    assert 25 <= exc.value.retry_after <= 31


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 10) == 10


def test_wrong_password_is_an_auth_error_without_secrets(
    sim: RosDomofonSimulator, log_lines: list[str]
) -> None:
    secret = "not-the-password-4711"
    with (
        RosDomofonAPI(sim.username, secret, base_url=sim.url) as api,
        pytest.raises(rd.RosDomofonAuthError) as exc,
    ):
        api.get_accounts()
    assert isinstance(exc.value, ReauthenticateError) and exc.value.status == 400
    assert "Bad credentials" in str(exc.value)
    assert secret not in str(exc.value) and secret not in repr(exc.value.body)
    assert not any(secret in line for line in log_lines)


def test_persistent_401_is_an_auth_error_and_the_echoed_token_is_scrubbed(
    api: RosDomofonAPI, sim: RosDomofonSimulator, log_lines: list[str]
) -> None:
    first = api.authenticate().access_token
    sim.calls.reset()
    sim.faults.update(unauthorized_next=2)
    with pytest.raises(rd.RosDomofonAuthError) as exc:
        api.get_accounts()
    second = api._http.tokens.response.access_token
    assert second != first  # it re-authenticated once before giving up
    assert sim.calls.count("GET", f"{V1}/accounts") == 2
    assert sim.calls.count("POST", "/authserver-service/oauth/token") == 1
    text = str(exc.value) + repr(exc.value.body)
    assert "***" in text  # the simulator echoes the token, as Spring does
    for token in (first, second):
        assert token not in text
        assert not any(token in line for line in log_lines)
    assert not any(sim.password in line for line in log_lines)


def test_token_expiry_mid_session_reauthenticates_once_without_duplicates(
    api: RosDomofonAPI, sim: RosDomofonSimulator, unique: str
) -> None:
    old = api.authenticate().access_token
    sim.calls.reset()
    sim.expire_tokens()
    created = api.create_account(f"E-{unique}", "79130000004")
    assert sim.calls.count("POST", f"{V1}/accounts", status=401) == 1
    assert sim.calls.count("POST", f"{V1}/accounts", status=200) == 1
    assert sim.calls.count("POST", "/authserver-service/oauth/token") == 1
    assert [a.id for a in sim.world.accounts.values() if a.number == f"E-{unique}"] == [created.id]
    new = api._http.tokens.response.access_token
    assert new != old and sim.tokens.status(new) == "valid"


def test_token_is_refreshed_before_expiry(
    api: RosDomofonAPI, sim: RosDomofonSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.authenticate()
    sim.calls.reset()
    tokens = api._http.tokens
    monkeypatch.setattr(tokens, "_clock", lambda: time.monotonic() + 3600 - 30)  # inside the 60 s margin
    api.get_accounts()
    assert sim.calls.count("POST", "/authserver-service/oauth/token") == 1
    assert sim.calls.count("GET", f"{V1}/accounts", status=401) == 0


def test_connection_refused_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        RosDomofonAPI("u", "p", base_url=url, read_retries=0) as api,
        pytest.raises(rd.RosDomofonConnectionError) as exc,
    ):
        api.get_accounts()
    assert isinstance(exc.value, RetryLaterError)


def test_read_timeout_is_transient_for_reads_and_ambiguous_for_writes(
    make_rosdomofon_sim: Callable[..., RosDomofonSimulator], unique: str
) -> None:
    sim = make_rosdomofon_sim()
    with RosDomofonAPI(sim.username, sim.password, base_url=sim.url, timeout=(1, 0.3), read_retries=0) as api:
        api.authenticate()
        sim.faults.update(latency=0.6)
        with pytest.raises(rd.RosDomofonTimeoutError):
            api.get_accounts()
        with pytest.raises(rd.RosDomofonAmbiguousWriteError) as exc:
            api.create_account(f"W-{unique}", "79130000005")
    assert isinstance(exc.value, LookUpFirstError) and not isinstance(exc.value, RetryLaterError)


def test_unexpected_response_shape_is_a_protocol_error(api: RosDomofonAPI, sim: RosDomofonSimulator) -> None:
    # A well-formed call whose answer does not fit the model (the entrance page, read as an account list).
    with pytest.raises(rd.RosDomofonProtocolError):
        api._call("GET", f"{V1}/entrances", list[Account], operation="probe")


# --- foreign exception mapping ------------------------------------------------------------------


def _foreign_classes() -> list[type[BaseException]]:
    return [c for _, c in inspect.getmembers(rex, inspect.isclass) if issubclass(c, rex.RequestException)]


@pytest.mark.parametrize("foreign", _foreign_classes(), ids=lambda c: c.__name__)
def test_every_requests_exception_is_mapped(foreign: type[BaseException]) -> None:
    assert foreign in _FOREIGN, f"{foreign.__name__} has no explicit mapping"
    instance = foreign("boom", "doc", 0) if foreign is rex.JSONDecodeError else foreign("boom pw-secret")
    err = error_from_exception(instance, operation="probe", method="GET", secrets=["pw-secret"])
    assert isinstance(err, rd.RosDomofonError) and "pw-secret" not in str(err)
    assert error_class_for(instance) is _FOREIGN[foreign]


def test_foreign_exception_text_is_scrubbed() -> None:
    err = error_from_exception(rex.ConnectionError("failed for pw-secret-1"), operation="probe", method="GET",
                               secrets=["pw-secret-1"])  # fmt: skip
    assert "pw-secret-1" not in str(err)


def test_requests_is_never_leaked(api: RosDomofonAPI) -> None:
    api._http.base_url = "nota://url"
    with pytest.raises(rd.RosDomofonError) as exc:
        api.get_accounts()
    assert not isinstance(exc.value, requests.RequestException)
