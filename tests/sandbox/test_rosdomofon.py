"""The simulator serves a client written to the public API (plain ``requests``, as the upstream
clients call it), plus its control API and its Kafka side over the real broker."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from confluent_kafka import Consumer, Producer, TopicPartition

from sandbox.rosdomofon import RosDomofonSimulator
from sandbox.rosdomofon.generator import generate
from sandbox.rosdomofon.state import World
from sandbox.stack.embedded import free_port
from schemas.kafka import KafkaIncomingMessage, KafkaOutgoingMessage

V1 = "/abonents-service/api/v1"
TOKEN = "/authserver-service/oauth/token"


class UpstreamStyleClient:
    """What [DC] does: form-encoded password grant, Bearer header, JSON Content-Type on every call."""

    def __init__(self, sim: RosDomofonSimulator) -> None:
        self.base = sim.url
        resp = requests.post(
            self.base + TOKEN,
            data={"grant_type": "password", "client_id": "machine", "username": sim.username,
                  "password": sim.password},
            timeout=5,
        )  # fmt: skip
        assert resp.status_code == 200, resp.text
        self.token = resp.json()["access_token"]
        self.headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.base + path, headers=self.headers, timeout=5, **kwargs)


@pytest.fixture
def client(rosdomofon_sim: RosDomofonSimulator) -> UpstreamStyleClient:
    rosdomofon_sim.faults.clear()
    return UpstreamStyleClient(rosdomofon_sim)


def control(sim: RosDomofonSimulator, method: str, path: str, **kwargs: Any) -> Any:
    resp = requests.request(method, f"{sim.url}/_sandbox{path}", timeout=15, **kwargs)
    assert resp.status_code == 200, resp.text
    return resp.json()


# --- token endpoint -----------------------------------------------------------------------------


def test_token_response_fields(rosdomofon_sim: RosDomofonSimulator) -> None:
    resp = requests.post(
        rosdomofon_sim.url + TOKEN,
        data={"grant_type": "password", "client_id": "machine", "username": rosdomofon_sim.username,
              "password": rosdomofon_sim.password},
        timeout=5,
    )  # fmt: skip
    body = resp.json()
    assert set(body) >= {"access_token", "token_type", "expires_in", "scope"}
    assert isinstance(body["expires_in"], int) and body["expires_in"] == 3600


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "password", "client_id": "abonent"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": "machine"}, 400, "unsupported_grant_type"),
        ({"grant_type": "password", "client_id": "machine", "password": "wrong"}, 400, "invalid_grant"),
    ],
)
def test_token_rejections(rosdomofon_sim: RosDomofonSimulator, form: dict, status: int, error: str) -> None:
    data = {"username": rosdomofon_sim.username, "password": rosdomofon_sim.password, **form}
    resp = requests.post(rosdomofon_sim.url + TOKEN, data=data, timeout=5)
    assert (resp.status_code, resp.json()["error"]) == (status, error)


def test_token_endpoint_wants_a_form(rosdomofon_sim: RosDomofonSimulator) -> None:
    resp = requests.post(rosdomofon_sim.url + TOKEN, json={"grant_type": "password"}, timeout=5)
    assert resp.status_code == 400


def test_401_for_missing_invalid_and_expired_tokens(
    make_rosdomofon_sim: Callable[..., RosDomofonSimulator],
) -> None:
    sim = make_rosdomofon_sim()
    url = sim.url + V1 + "/accounts"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    client = UpstreamStyleClient(sim)
    assert client.call("GET", V1 + "/accounts").status_code == 200
    assert control(sim, "POST", "/tokens/expire") == {"expired": 1}
    resp = client.call("GET", V1 + "/accounts")
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_token"


def test_configurable_token_lifetime(make_rosdomofon_sim: Callable[..., RosDomofonSimulator]) -> None:
    sim = make_rosdomofon_sim(token_lifetime=1)
    client = UpstreamStyleClient(sim)
    assert client.call("GET", V1 + "/accounts").status_code == 200
    deadline = time.monotonic() + 5
    while sim.tokens.status(client.token) == "valid" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.call("GET", V1 + "/accounts").status_code == 401


# --- accounts -----------------------------------------------------------------------------------


ACCOUNT_KEYS = {"id", "billingAvailable", "number", "termsOfUseLink", "blockReason", "owner", "company",
                "blocked", "isCompanyRecurringEnabled"}  # fmt: skip


def test_accounts_wire_shape(client: UpstreamStyleClient) -> None:
    accounts = client.call("GET", V1 + "/accounts").json()
    assert len(accounts) >= 20
    account = accounts[0]
    assert set(account) >= ACCOUNT_KEYS
    assert isinstance(account["owner"]["phone"], int) and re.fullmatch(
        r"7\d{10}", str(account["owner"]["phone"])
    )
    assert account["company"]["shortName"] == "SK_SB"
    info = client.call("GET", f"{V1}/accounts/{account['id']}").json()
    assert set(info) >= {
        "balance",
        "company",
        "owner",
        "connections",
        "invoice",
        "recurringPayment",
        "paidUntil",
    }
    for delegation in info["owner"]["delegations"]:
        assert set(delegation["fromAbonent"]) == {"id", "phone"}


def test_create_account_then_block_and_unblock(client: UpstreamStyleClient, unique: str) -> None:
    resp = client.call("POST", V1 + "/accounts", json={"number": f"S-{unique}", "phone": "79131112233"})
    assert resp.status_code == 200
    created = resp.json()
    assert set(created) == {"id", "owner"} and created["owner"]["phone"] == 79131112233
    listed = {a["id"]: a for a in client.call("GET", V1 + "/accounts").json()}
    assert listed[created["id"]]["blocked"] is False
    block = client.call("PUT", f"{V1}/accounts/{created['id']}/block")
    assert block.status_code == 200 and block.content == b""
    assert {a["id"]: a for a in client.call("GET", V1 + "/accounts").json()}[created["id"]]["blocked"] is True
    assert client.call("DELETE", f"{V1}/accounts/S-{unique}/block").status_code == 200  # by number too
    assert {a["id"]: a for a in client.call("GET", V1 + "/accounts").json()}[created["id"]][
        "blocked"
    ] is False


@pytest.mark.parametrize(
    ("phone", "status"), [("+79131112233", 422), ("89131112233", 422), (79131112233, 400)]
)
def test_create_account_phone_rules(
    client: UpstreamStyleClient, unique: str, phone: Any, status: int
) -> None:
    resp = client.call("POST", V1 + "/accounts", json={"number": f"P-{unique}", "phone": phone})
    assert resp.status_code == status
    assert "phone" in resp.json()["message"]


# --- flats, services, connections ---------------------------------------------------------------


def test_flat_service_connection_flow(
    client: UpstreamStyleClient, rosdomofon_sim: RosDomofonSimulator
) -> None:
    account = client.call("GET", V1 + "/accounts").json()[1]
    entrance = next(iter(rosdomofon_sim.world.entrances.values()))
    resp = client.call("POST", V1 + "/flats", json={
        "abonentId": account["owner"]["id"], "entranceId": str(entrance.id),
        "flatNumber": str(entrance.flat_end), "virtual": False,
    })  # fmt: skip
    assert resp.status_code == 200, resp.text
    flat = resp.json()
    assert "address" not in flat and flat["owner"] == {"id": account["owner"]["id"]}
    outside = client.call("POST", V1 + "/flats", json={"entranceId": str(entrance.id), "flatNumber": "9999"})
    assert outside.status_code == 422
    services = client.call("GET", f"{V1}/entrances/{entrance.id}/services").json()
    assert all(set(s) >= {"id", "name", "type"} for s in services)
    path = f"{V1}/services/{services[0]['id']}/connections"
    wrong = client.call("POST", path, json={"flatId": str(flat["id"])})  # the pre-0.1.14 mistake
    assert wrong.status_code == 400 and "flatId" in wrong.json()["message"]
    conn = client.call("POST", path, json={"flatId": flat["id"], "accountId": account["id"]})
    assert conn.status_code == 200 and set(conn.json()) == {"id"}
    listed = {c["id"]: c for c in client.call("GET", path).json()}
    assert listed[conn.json()["id"]]["flat"]["id"] == flat["id"]
    block_path = f"{V1}/services_connections/{conn.json()['id']}/block"
    assert client.call("PUT", block_path).status_code == 200
    assert {c["id"]: c for c in client.call("GET", path).json()}[conn.json()["id"]]["blocked"] is True
    account_conns = client.call("GET", f"{V1}/accounts/{account['id']}/connections").json()
    assert conn.json()["id"] in {c["id"] for c in account_conns}


def test_abonent_flats_work_every_other_time(client: UpstreamStyleClient) -> None:
    abonent_id = client.call("GET", V1 + "/accounts").json()[0]["owner"]["id"]
    statuses = [client.call("GET", f"{V1}/abonents/{abonent_id}/flats").status_code for _ in range(4)]
    assert sorted(statuses) == [200, 200, 500, 500]


def test_services_page(client: UpstreamStyleClient, rosdomofon_sim: RosDomofonSimulator) -> None:
    page = client.call("GET", V1 + "/services", params={"page": 0, "size": 1000}).json()
    assert page["totalElements"] == len(rosdomofon_sim.world.services) and page["last"] is True


# --- entrances ----------------------------------------------------------------------------------

PAGE_KEYS = {"content", "empty", "first", "last", "number", "numberOfElements", "size", "totalElements",
             "totalPages", "pageable", "sort"}  # fmt: skip


def test_entrances_paging_until_last(
    client: UpstreamStyleClient, rosdomofon_sim: RosDomofonSimulator
) -> None:
    seen, page_no = [], 0
    while True:
        page = client.call("GET", V1 + "/entrances", params={"page": page_no, "size": 1}).json()
        assert set(page) >= PAGE_KEYS and page["number"] == page_no and page["size"] == 1
        assert set(page["pageable"]) == {"offset", "pageNumber", "pageSize", "paged", "unpaged"}
        seen += [e["id"] for e in page["content"]]
        if page["last"] or not page["content"]:
            break
        page_no += 1
    assert sorted(seen) == sorted(rosdomofon_sim.world.entrances)
    entrance = page["content"][0]["address"]["entrance"]
    assert {"flatStart", "flatEnd", "additionalFlatRanges"} <= set(entrance)


def test_entrance_address_lookup_and_fallback(
    client: UpstreamStyleClient, rosdomofon_sim: RosDomofonSimulator
) -> None:
    e = next(iter(rosdomofon_sim.world.entrances.values()))
    exact = client.call(
        "GET", V1 + "/entrances", params={"address": f"{e.city}, {e.street}, {e.house}"}
    ).json()
    assert e.id in [x["id"] for x in exact["content"]]
    fallback = client.call("GET", V1 + "/entrances", params={"address": f"{e.city}, , {e.house}"}).json()
    assert e.id in [x["id"] for x in fallback["content"]]
    none = client.call("GET", V1 + "/entrances", params={"address": "Москва, Тверская, 1"}).json()
    assert none["content"] == [] and none["empty"] is True and none["last"] is True


def test_entrance_detail_has_a_trailing_slash(
    client: UpstreamStyleClient, rosdomofon_sim: RosDomofonSimulator
) -> None:
    entrance_id = next(iter(rosdomofon_sim.world.entrances))
    detail = client.call("GET", f"/rdas-service/api/v1/entrances/{entrance_id}/").json()
    assert set(detail) >= {"id", "address", "addressString", "cameras", "rda", "services"}
    assert client.call("GET", "/rdas-service/api/v1/entrances/999999/").status_code == 404


def test_wire_types_are_the_upstream_packages(
    client: UpstreamStyleClient, rosdomofon_sim: RosDomofonSimulator
) -> None:
    """Street codes and intercom indexes are strings, a camera's address an object (the contract test
    checks the same with the package itself, when Python 3.12 is at hand)."""
    by_street: dict[str, set[tuple[str, str]]] = {}
    page = client.call("GET", V1 + "/entrances", params={"size": 1000}).json()
    for entrance in page["content"]:
        for service in entrance["services"]:
            camera = service["cameras"][0]
            assert camera["address"]["entrance"]["id"] == entrance["id"]
            street = camera["address"]["street"]
            assert re.fullmatch(r"[0-9a-f-]{36}", street["codeFias"]), street
            assert re.fullmatch(r"\d{17}", street["codeKladr"]), street
            by_street.setdefault(street["name"], set()).add((street["codeFias"], street["codeKladr"]))
            assert isinstance(service["rdas"][0]["intercoms"][0]["index"], str)
    # One street, one pair of codes, whichever entrance shows it.
    assert by_street and all(len(codes) == 1 for codes in by_street.values()), by_street
    account_id = client.call("GET", V1 + "/accounts").json()[0]["id"]
    flat = client.call("GET", V1 + f"/accounts/{account_id}/flats").json()[0]
    assert isinstance(flat["adapters"][0]["intercomIndex"], str)
    connection = client.call("GET", V1 + f"/accounts/{account_id}/connections").json()[0]
    assert isinstance(connection["flat"]["address"]["street"]["codeKladr"], str)


# --- messages and sign-ups ----------------------------------------------------------------------


def test_messages_both_upstream_body_styles(client: UpstreamStyleClient, unique: str) -> None:
    owner = client.call("GET", V1 + "/accounts").json()[2]["owner"]
    dc = {"toAbonents": [{"id": owner["id"], "phone": 0}], "channel": "support", "message": f"dc {unique}",
          "deliveryMethod": "push", "broadcast": False}  # fmt: skip
    lp = {"toAbonents": [{"phone": f"+{owner['phone']}"}], "channel": "notification",
          "message": f"lp {unique}", "deliveryMethod": "push"}  # fmt: skip
    for body in (dc, lp):
        resp = client.call("POST", V1 + "/messages", json=body)
        assert resp.status_code == 200
        assert [set(r) for r in resp.json()] == [{"id", "success", "result"}]
        assert resp.json()[0]["success"] is True
    page = client.call("GET", f"{V1}/abonents/{owner['id']}/messages", params={"size": 2}).json()
    assert set(page) >= PAGE_KEYS
    assert [(m["message"], m["incoming"]) for m in page["content"]] == [
        (f"lp {unique}", False),
        (f"dc {unique}", False),
    ]
    support = client.call(
        "GET", f"{V1}/abonents/{owner['id']}/messages", params={"channel": "support"}
    ).json()
    assert all(m["channel"] == "support" for m in support["content"])
    upper = client.call("POST", V1 + "/messages", json={**dc, "deliveryMethod": "PUSH"})
    assert upper.status_code == 400


def test_signup_status_patch(client: UpstreamStyleClient, rosdomofon_sim: RosDomofonSimulator) -> None:
    signup_id = list(rosdomofon_sim.world.signups)[-1]
    path = f"/abonents-service/api/v2/sign_ups/{signup_id}"
    assert client.call("PATCH", path, json={"status": "connected", "isVirtual": True}).status_code == 200
    assert rosdomofon_sim.world.signups[signup_id].status == "CONNECTED"
    assert client.call("PATCH", path, json={"status": "CONNECTED"}).status_code == 400
    assert client.call("PATCH", "/abonents-service/api/v2/sign_ups/1", json={}).status_code == 404


# --- generator ----------------------------------------------------------------------------------


def _snapshot(world: World) -> Any:
    return [(a.id, a.number, world.abonents[a.owner_id].phone) for a in world.accounts.values()], [
        (e.id, e.flat_start, e.flat_end, len(e.additional_ranges)) for e in world.entrances.values()
    ]


def test_path_parameters_of_the_wrong_type_answer_400(client: UpstreamStyleClient) -> None:
    for path in (f"{V1}/accounts/abc", f"{V1}/entrances/1.5/flats", "/rdas-service/api/v1/entrances/x/"):
        answer = client.call("GET", path)
        assert answer.status_code == 400, path
        assert answer.json()["status"] == 400 and answer.json()["path"] == path


def test_two_simulators_keep_their_own_world(
    make_rosdomofon_sim: Callable[..., RosDomofonSimulator],
) -> None:
    """Handlers live at module level; each reaches the context of the app that serves the request."""
    first = make_rosdomofon_sim(company="SK_ONE", seed=1, password="first")
    second = make_rosdomofon_sim(company="SK_TWO", seed=2, password="second")
    assert control(first, "GET", "/info")["company"] == "SK_ONE"
    assert control(second, "GET", "/info")["company"] == "SK_TWO"
    token = UpstreamStyleClient(first).token
    refused = requests.get(
        f"{second.url}{V1}/accounts", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert refused.status_code == 401
    ones = {a["number"] for a in UpstreamStyleClient(first).call("GET", f"{V1}/accounts").json()}
    twos = {a["number"] for a in UpstreamStyleClient(second).call("GET", f"{V1}/accounts").json()}
    assert ones == {a.number for a in first.world.accounts.values()}
    assert twos == {a.number for a in second.world.accounts.values()}
    accounts = f"{V1}/accounts"
    assert (first.calls.count("GET", accounts), first.calls.count("POST", TOKEN)) == (1, 2)
    assert (second.calls.count("GET", accounts), second.calls.count("GET", accounts, status=401)) == (2, 1)


def test_generator_is_deterministic() -> None:
    one = generate(World(), accounts=30, seed=7, company="X")
    two = generate(World(), accounts=30, seed=7, company="X")
    other = generate(World(), accounts=30, seed=8, company="X")
    assert _snapshot(one) == _snapshot(two)
    assert _snapshot(one) != _snapshot(other)
    assert len(one.accounts) == 30 and len({a.phone for a in one.abonents.values()}) == len(one.abonents)
    flats = [f for f in one.flats.values()]
    assert all(one.entrances[f.entrance_id].has_flat(int(f.flat_number)) for f in flats)
    assert one.connections and one.services


# --- control API --------------------------------------------------------------------------------


def test_call_log_counts_and_reset(client: UpstreamStyleClient, rosdomofon_sim: RosDomofonSimulator) -> None:
    control(rosdomofon_sim, "DELETE", "/calls")
    account_id = client.call("GET", V1 + "/accounts").json()[0]["id"]
    client.call("GET", f"{V1}/accounts/{account_id}")
    client.call("GET", f"{V1}/accounts/{account_id + 100000}")
    log = control(rosdomofon_sim, "GET", "/calls")
    assert [(c["method"], c["status"]) for c in log["calls"]] == [("GET", 200), ("GET", 200), ("GET", 404)]
    assert log["counts"][f"GET {V1}/accounts/{{account_id}}"] == 2
    assert log["ok_counts"][f"GET {V1}/accounts/{{account_id}}"] == 1
    control(rosdomofon_sim, "DELETE", "/calls")
    assert control(rosdomofon_sim, "GET", "/calls")["calls"] == []


def test_injected_faults(client: UpstreamStyleClient, rosdomofon_sim: RosDomofonSimulator) -> None:
    url = V1 + "/accounts"
    control(rosdomofon_sim, "POST", "/faults", json={"fail_next": 2, "fail_status": 502})
    assert [client.call("GET", url).status_code for _ in range(3)] == [502, 502, 200]
    control(rosdomofon_sim, "POST", "/faults", json={"rate_limit_next": 1, "retry_after": "12"})
    limited = client.call("GET", url)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "12"
    control(rosdomofon_sim, "POST", "/faults", json={"error_rate": 1.0, "error_status": 500})
    assert client.call("GET", url).status_code == 500
    assert control(rosdomofon_sim, "DELETE", "/faults")["error_rate"] == 0
    control(rosdomofon_sim, "POST", "/faults", json={"latency": 0.3})
    started = time.monotonic()
    assert client.call("GET", url).status_code == 200
    assert time.monotonic() - started >= 0.3
    control(rosdomofon_sim, "DELETE", "/faults")
    bad = requests.post(f"{rosdomofon_sim.url}/_sandbox/faults", json={"nonsense": 1}, timeout=5)
    assert bad.status_code == 400


def test_listing_accounts_and_subscribers(rosdomofon_sim: RosDomofonSimulator) -> None:
    accounts = control(rosdomofon_sim, "GET", "/accounts")
    assert {"id", "number", "abonentId", "phone", "flats", "blocked"} <= set(accounts[0])
    subscribers = {s["abonentId"]: s for s in control(rosdomofon_sim, "GET", "/subscribers")}
    assert accounts[0]["id"] in subscribers[accounts[0]["abonentId"]]["accountIds"]
    info = control(rosdomofon_sim, "GET", "/info")
    assert info["username"] == rosdomofon_sim.username and info["kafka"] is None
    resp = requests.post(f"{rosdomofon_sim.url}/_sandbox/subscribers/1/send", json={"text": "x"}, timeout=5)
    assert resp.status_code == 409  # no Kafka on this simulator


# --- Kafka side ---------------------------------------------------------------------------------


def test_subscriber_message_is_consumed_from_the_broker(
    rosdomofon_sim_kafka: RosDomofonSimulator, kafka_bootstrap: str, unique: str
) -> None:
    sim = rosdomofon_sim_kafka
    account = control(sim, "GET", "/accounts")[3]
    text = f"Не открывается дверь {unique}"
    record = control(sim, "POST", f"/subscribers/{account['abonentId']}/send", json={"text": text})
    assert record["topic"] == "MESSAGES_IN_SK_SB"
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"t-{unique}",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(record["topic"], record["partition"], record["offset"])])
    try:
        deadline, msg = time.monotonic() + 20, None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None and msg.key() is None
    finally:
        consumer.close()
    raw = json.loads(msg.value().decode("utf-8"))
    assert raw["message"] is None and raw["localizedPush"]["message"] == text
    assert raw["waitResponse"] is True and raw["toAbonents"] is None and "timestamp" not in raw
    parsed = KafkaIncomingMessage.model_validate(raw)
    assert parsed.text == text
    assert (parsed.from_abonent.id, parsed.from_abonent.phone) == (account["abonentId"], account["phone"])
    history = control(sim, "GET", f"/subscribers/{account['abonentId']}/messages")
    assert (history[0]["message"], history[0]["incoming"], history[0]["source"]) == (text, True, "kafka-in")


def test_messages_out_are_recorded_in_history(
    rosdomofon_sim_kafka: RosDomofonSimulator, kafka_bootstrap: str, unique: str
) -> None:
    sim = rosdomofon_sim_kafka
    account = control(sim, "GET", "/accounts")[4]
    good = KafkaOutgoingMessage.to_subscriber(account["abonentId"], account["phone"], f"ответ {unique}")
    wrong = {**good.to_wire(), "deliveryMethod": "push", "message": f"wrong {unique}"}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce("MESSAGES_OUT_SK_SB", value=json.dumps(wrong).encode())
    producer.produce("MESSAGES_OUT_SK_SB", value=good.to_json_bytes())
    assert producer.flush(10) == 0
    deadline = time.monotonic() + 30
    texts: list[str] = []
    while time.monotonic() < deadline and f"ответ {unique}" not in texts:
        time.sleep(0.1)
        texts = [m.text for m in sim.history(account["abonentId"])]
    assert f"ответ {unique}" in texts and f"wrong {unique}" not in texts
    client = UpstreamStyleClient(sim)
    page = client.call("GET", f"{V1}/abonents/{account['abonentId']}/messages").json()
    assert (page["content"][0]["message"], page["content"][0]["incoming"]) == (f"ответ {unique}", False)
    out = control(sim, "GET", "/kafka/out")
    rejected = [r for r in out if r.get("payload", {}).get("message") == f"wrong {unique}"]
    assert rejected and "PUSH" in rejected[0]["rejected"]


def test_signup_event_published(
    rosdomofon_sim_kafka: RosDomofonSimulator, kafka_bootstrap: str, unique: str
) -> None:
    from schemas.kafka import SignUpEvent

    sim = rosdomofon_sim_kafka
    signup_id = next(iter(sim.world.signups))
    records = control(sim, "POST", f"/signups/{signup_id}/publish")
    assert [r["topic"] for r in records] == ["SIGN_UPS_SK_SB", "SIGN_UPS_ALL"]
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"s-{unique}"})
    consumer.assign([TopicPartition(r["topic"], r["partition"], r["offset"]) for r in records])
    try:
        got: list[Any] = []
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(SignUpEvent.model_validate_json(msg.value()))
    finally:
        consumer.close()
    assert [e.id for e in got] == [signup_id, signup_id]
    assert got[0].status == "UNPROCESSED" and got[0].time_zone == "Europe/Moscow +03:00"


# --- command line -------------------------------------------------------------------------------


@pytest.mark.process
def test_rdb24_sandbox_rosdomofon_prints_url_and_credentials_and_serves() -> None:
    port = free_port()
    rdb24 = os.path.join(os.path.dirname(sys.executable), "rdb24")
    proc = subprocess.Popen(
        [rdb24, "sandbox", "rosdomofon", "--port", str(port), "--accounts", "3", "--seed", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        lines: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while "ROSDOMOFON_PASSWORD" not in lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if "=" in line:
                key, _, value = line.strip().partition("=")
                lines[key] = value
        assert lines.get("ROSDOMOFON_BASE_URL") == f"http://127.0.0.1:{port}"
        token = requests.post(
            lines["ROSDOMOFON_BASE_URL"] + TOKEN,
            data={"grant_type": "password", "client_id": "machine", "username": lines["ROSDOMOFON_USERNAME"],
                  "password": lines["ROSDOMOFON_PASSWORD"]},
            timeout=5,
        )  # fmt: skip
        assert token.status_code == 200
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        accounts = requests.get(lines["ROSDOMOFON_BASE_URL"] + V1 + "/accounts", headers=headers, timeout=5)
        assert len(accounts.json()) == 3
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
