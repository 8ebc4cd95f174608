"""Drives a running RosDomofon simulator with the upstream ``rosdomofon`` package's own client.

Run by ``tests/sandbox/test_rosdomofon_contract.py`` with the Python 3.12 interpreter of a venv that
has the package installed (it needs Python >= 3.12, which our project does not), never imported by
the test suite itself. It imports nothing of ours: what it checks is that the package, as published,
parses what the simulator serves.

    python upstream_rosdomofon_driver.py BASE_URL USERNAME PASSWORD WORKDIR

WORKDIR holds ``kafka_payloads.json`` (records the simulator would produce, and recipients, written
by the test) and receives ``report.json``: ``{call: {"ok": bool, "detail": str}}`` for every client
call, plus ``_messages_out`` (what the package's Kafka client would produce to MESSAGES_OUT). The report goes
to a file because the client prints to stdout (``get_entrances`` pprints each page).
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from loguru import logger
from rosdomofon import RosDomofonAPI
from rosdomofon.models import (
    KafkaAbonentInfo,
    KafkaFromAbonent,
    KafkaIncomingMessage,
    KafkaOutgoingMessage,
    SignUpEvent,
)

Check = Callable[[], object]


class Driver:
    """One upstream client, the ids it discovers along the way, and the result of each call."""

    def __init__(self, base_url: str, username: str, password: str, workdir: Path) -> None:
        self.base_url = base_url
        self.username = username
        self.password = password
        self.workdir = workdir
        self.api = self.client(password)
        self.report: dict[str, dict[str, Any]] = {}

    def client(self, password: str) -> RosDomofonAPI:
        api = RosDomofonAPI(self.username, password, cache_file=str(self.workdir / "entrances_cache.json"))
        api.BASE_URL = self.base_url  # a class attribute upstream; per instance here
        return api

    def check(self, name: str, call: Check) -> None:
        try:
            result = call()
        except Exception as exc:  # every failure is a finding for the report
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            self.report[name] = {"ok": False, "detail": detail[:4000]}
        else:
            self.report[name] = {"ok": True, "detail": repr(result)[:300]}

    def raw(self, path: str) -> Any:
        """``GET path`` with the client's token, as plain JSON (no upstream model involved)."""
        headers = {"Authorization": f"Bearer {self.api.access_token}"}
        response = requests.get(self.base_url + path, headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def control(self, method: str, path: str) -> Any:
        response = requests.request(method, f"{self.base_url}/_sandbox{path}", timeout=10)
        response.raise_for_status()
        return response.json()


def run(d: Driver) -> None:
    """One check per upstream call, in the order a client makes them.

    The ids each call needs come from the same endpoints read as plain JSON (:meth:`Driver.raw`),
    not from the parsed results, so a model that rejects one answer fails only its own check.
    """
    api = d.api

    d.check("authenticate", lambda: api.authenticate().access_token)

    def wrong_password() -> str:
        # The token endpoint must answer a bad password with 400, never 401: the client would
        # re-enter authenticate() on a 401 from the token endpoint itself.
        try:
            d.client(d.password + "-wrong").authenticate()
        except requests.HTTPError as exc:
            assert exc.response.status_code == 400, exc.response.status_code
            return "400"
        raise AssertionError("a wrong password was accepted")

    d.check("authenticate_wrong_password", wrong_password)

    account = d.raw("/abonents-service/api/v1/accounts")[0]
    account_id, owner_id, phone = account["id"], account["owner"]["id"], account["owner"]["phone"]
    flat = d.raw(f"/abonents-service/api/v1/accounts/{account_id}/flats")[0]
    address = flat["address"]
    entrance_id = str(address["entrance"]["id"])
    service_id = d.raw(f"/abonents-service/api/v1/entrances/{entrance_id}/services")[0]["id"]
    connection_id = d.raw(f"/abonents-service/api/v1/accounts/{account_id}/connections")[0]["id"]
    city, street, house = address["city"], address["street"]["name"], address["house"]["number"]

    d.check("get_accounts", lambda: len(api.get_accounts()))
    d.check("get_account_info", lambda: api.get_account_info(account_id).id)
    d.check("get_account_by_phone", lambda: _found(api.get_account_by_phone(phone)).id)
    d.check("get_account_flats", lambda: len(_found(api.get_account_flats(account_id))))
    d.check("get_account_connections", lambda: len(_found(api.get_account_connections(account_id))))
    d.check("get_entrance_services", lambda: len(_found(api.get_entrance_services(entrance_id))))
    d.check("get_service_connections", lambda: len(_found(api.get_service_connections(service_id))))
    d.check("get_all_services", lambda: len(_found(api.get_all_services())))
    d.check("get_entrances", lambda: api.get_entrances(page=0, size=5).total_elements)
    d.check("get_entrances_all_pages", lambda: len(api.get_entrances(size=2, all=True).content))
    d.check("get_entrance", lambda: api.get_entrance(entrance_id).id)
    d.check("get_entrance_flats", lambda: len(_found(api.get_entrance_flats(entrance_id))))
    d.check(
        "find_entrance_by_address", lambda: len(_found(api.find_entrance_by_address(city, street, house)))
    )
    d.check(
        "find_entrance_by_address_and_flat",
        lambda: _found(api.find_entrance_by_address_and_flat(city, street, house, int(address["flat"]))).id,
    )

    def abonent_flats() -> int:
        # Upstream v0.1.15: the endpoint "works every other time"; the simulator answers 500 on
        # every second call, so one retry is what a client of the real API does too.
        try:
            return len(api.get_abonent_flats(owner_id))
        except requests.HTTPError as exc:
            assert exc.response.status_code == 500, exc.response.status_code
            return len(api.get_abonent_flats(owner_id))

    d.check("get_abonent_flats", abonent_flats)

    new_phone = str(79_990_000_000 + account_id % 1_000_000)
    d.check("create_account", lambda: api.create_account(f"C{account_id}", new_phone).id)
    made = [a for a in d.raw("/abonents-service/api/v1/accounts") if a["owner"]["phone"] == int(new_phone)]
    if made:  # otherwise create_flat and connect_service are reported as not reached
        new = made[0]
        flat_number = str(address["entrance"]["flatStart"])
        d.check("create_flat", lambda: api.create_flat(flat_number, entrance_id, new["owner"]["id"]).id)
        flats = d.raw(f"/abonents-service/api/v1/accounts/{new['id']}/flats")
        if flats:
            d.check("connect_service", lambda: api.connect_service(service_id, flats[0]["id"], new["id"]).id)

    d.check("block_account", lambda: _true(api.block_account(str(account_id))))
    d.check("unblock_account", lambda: _true(api.unblock_account(str(account_id))))
    # The package's docstring calls the path parameter the billing account number.
    d.check(
        "block_account_by_number",
        lambda: _true(api.block_account(account["number"]) and api.unblock_account(account["number"])),
    )
    d.check("block_connection", lambda: _true(api.block_connection(connection_id)))
    d.check("unblock_connection", lambda: _true(api.unblock_connection(connection_id)))

    d.check(
        "send_message_to_abonent",
        lambda: _true(api.send_message_to_abonent(owner_id, "support", "Здравствуйте! Проверка связи")),
    )
    d.check("get_abonent_messages", lambda: api.get_abonent_messages(owner_id, "support").total_elements)

    signups = d.control("GET", "/signups")
    if signups:
        d.check("update_signup", lambda: _true(api.update_signup(signups[0]["id"], status="processed")))

    def reauthenticates_on_401() -> int:
        # Since v0.1.7 the client answers a 401 by running the password grant again and retrying once.
        issued = d.control("GET", "/info")["tokensIssued"]
        d.control("POST", "/tokens/expire")
        count = len(api.get_accounts())
        assert d.control("GET", "/info")["tokensIssued"] == issued + 1, "no new token was issued"
        return count

    d.check("reauthenticate_after_401", reauthenticates_on_401)

    payloads = json.loads((d.workdir / "kafka_payloads.json").read_text(encoding="utf-8"))
    for n, payload in enumerate(payloads["messages_in"]):
        d.check(f"kafka_messages_in_{n}", lambda p=payload: KafkaIncomingMessage(**p).text)
    for n, payload in enumerate(payloads["sign_ups"]):
        d.check(f"kafka_sign_up_{n}", lambda p=payload: SignUpEvent(**p).id)
    d.report["_messages_out"] = {"ok": True, "detail": messages_out(payloads["recipients"])}


def messages_out(recipients: list[dict[str, int]]) -> list[dict[str, Any]]:
    """MESSAGES_OUT values exactly as ``RosDomofonKafkaClient.send_message`` (and ``..._to_multiple``)
    build them before the producer serializes them: a system message (``send_kafka_message`` passes
    sender 0/0), one without a sender, one to several subscribers.

    Built here rather than produced: the package's producer pins ``api_version=(0, 10, 0)``, whose
    message format the embedded broker (Tansu) does not read, so the test hands these to the
    simulator's MESSAGES_OUT check instead.
    """
    to = [KafkaAbonentInfo(id=r["id"], phone=r["phone"], company_id=r["companyId"]) for r in recipients]
    system = KafkaFromAbonent(id=0, phone=0)
    built = [
        KafkaOutgoingMessage(message="Ответ оператора", to_abonents=to[:1], from_abonent=system),
        KafkaOutgoingMessage(message="Ответ без отправителя", to_abonents=to[:1], from_abonent=None),
        KafkaOutgoingMessage(message="Групповое сообщение", to_abonents=to, from_abonent=None),
    ]
    return [json.loads(json.dumps(m.model_dump(by_alias=True), ensure_ascii=False)) for m in built]


def _found(value: Any) -> Any:
    assert value, "nothing found"
    return value


def _true(value: bool) -> bool:
    assert value is True, value
    return value


def main(argv: list[str]) -> int:
    base_url, username, password, workdir = argv[1:5]
    logger.remove()  # the client logs every call at INFO; only warnings help when a check fails
    logger.add(sys.stderr, level="WARNING")
    driver = Driver(base_url, username, password, Path(workdir))
    try:
        run(driver)
    finally:
        driver.api.close()
        methods = sorted(m for m, v in vars(RosDomofonAPI).items() if callable(v) and not m.startswith("_"))
        driver.report["_public_methods"] = {"ok": True, "detail": methods}
        Path(workdir, "report.json").write_text(json.dumps(driver.report, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
