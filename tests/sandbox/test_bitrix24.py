"""The portal simulator spoken to with plain ``requests``, exactly as the public docs describe the API
(none of our client code), so the simulator's faithfulness is checked independently of our client."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import click
import pytest
import requests

import sandbox.bitrix24
from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.stack.embedded import free_port

TIME_KEYS = {
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating",
    "operating_reset_at",
}


@pytest.fixture
def sim(bitrix24_fresh: Bitrix24Simulator) -> Bitrix24Simulator:
    return bitrix24_fresh


def call(sim: Bitrix24Simulator, method: str, params: dict | None = None) -> requests.Response:
    return requests.post(f"{sim.webhook_url}{method}.json", json=params or {}, timeout=10)


def add(sim: Bitrix24Simulator, name: str, phone: str | None = None) -> int:
    fields: dict = {"NAME": name}
    if phone:
        fields["PHONE"] = [{"VALUE": phone, "VALUE_TYPE": "WORK"}]
    answer = call(sim, "crm.contact.add", {"fields": fields})
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def test_envelope_and_encodings(sim: Bitrix24Simulator) -> None:
    by_get = requests.get(
        f"{sim.webhook_url}crm.contact.add",
        params={"fields[NAME]": "Get", "fields[PHONE][0][VALUE]": "79130000001"},
        timeout=5,
    ).json()
    by_form = requests.post(
        f"{sim.webhook_url}crm.contact.add.json", data={"fields[NAME]": "Form"}, timeout=5
    ).json()
    by_json = call(sim, "crm.contact.get", {"id": by_get["result"]}).json()
    assert isinstance(by_get["result"], int) and isinstance(by_form["result"], int)
    assert set(by_json["time"]) == TIME_KEYS and by_json["result"]["ID"] == str(by_get["result"])
    assert (
        by_json["result"]["PHONE"][0]["VALUE"] == "79130000001"
        and by_json["result"]["PHONE"][0]["TYPE_ID"] == "PHONE"
    )
    assert "total" not in by_json and "next" not in by_json


def test_legacy_crm_errors_have_empty_codes(sim: Bitrix24Simulator) -> None:
    missing = call(sim, "crm.contact.get", {"id": 424242})
    invalid = call(sim, "crm.contact.get", {"id": "x"})
    unknown = call(sim, "crm.nothing.here")
    assert (missing.status_code, missing.json()) == (400, {"error": "", "error_description": "Not found"})
    assert invalid.json()["error_description"] == "ID is not defined or invalid."
    assert (unknown.status_code, unknown.json()["error"]) == (404, "ERROR_METHOD_NOT_FOUND")


def test_pages_of_fifty_and_start_minus_one(sim: Bitrix24Simulator) -> None:
    for i in range(120):
        add(sim, f"P{i}")
    first = call(sim, "crm.contact.list", {"select": ["ID"]}).json()
    assert (len(first["result"]), first["total"], first["next"]) == (50, 120, 50)
    middle = call(sim, "crm.contact.list", {"select": ["ID"], "start": 75}).json()  # old-style: page 2
    assert middle["result"][0]["ID"] == "51" and middle["next"] == 100
    last = call(sim, "crm.contact.list", {"select": ["ID"], "start": 100}).json()
    assert len(last["result"]) == 20 and "next" not in last
    fast = call(
        sim,
        "crm.contact.list",
        {"select": ["ID"], "order": {"ID": "ASC"}, "filter": {">ID": 60}, "start": -1},
    ).json()
    assert (
        fast["total"] == 0
        and "next" not in fast
        and fast["result"][0]["ID"] == "61"
        and len(fast["result"]) == 50
    )


def test_select_and_multifields(sim: Bitrix24Simulator) -> None:
    add(sim, "Sel", "79131112233")
    call(sim, "crm.contact.userfield.add", {"fields": {"FIELD_NAME": "ACC", "USER_TYPE_ID": "string"}})
    default = call(sim, "crm.contact.list").json()["result"][0]
    star = call(sim, "crm.contact.list", {"select": ["*"]}).json()["result"][0]
    named = call(sim, "crm.contact.list", {"select": ["*", "PHONE", "UF_*"]}).json()["result"][0]
    assert "PHONE" not in default and "PHONE" not in star and "UF_CRM_ACC" not in star
    assert named["PHONE"][0]["VALUE"] == "79131112233" and "UF_CRM_ACC" in named


def test_multifield_update_rules(sim: Bitrix24Simulator) -> None:
    contact = add(sim, "Multi", "79131112233")
    row = call(sim, "crm.contact.get", {"id": contact}).json()["result"]["PHONE"][0]
    call(sim, "crm.contact.update", {"id": contact, "fields": {"PHONE": [{"VALUE": "79131112233"}]}})
    phones = call(sim, "crm.contact.get", {"id": contact}).json()["result"]["PHONE"]
    assert [p["VALUE"] for p in phones] == ["79131112233", "79131112233"]  # a row without ID is ADDED
    call(sim, "crm.contact.update", {"id": contact, "fields": {"PHONE": [{"ID": phones[1]["ID"]}]}})
    call(
        sim,
        "crm.contact.update",
        {"id": contact, "fields": {"PHONE": [{"ID": row["ID"], "VALUE": "79990000000"}]}},
    )
    phones = call(sim, "crm.contact.get", {"id": contact}).json()["result"]["PHONE"]
    assert [(p["ID"], p["VALUE"]) for p in phones] == [(row["ID"], "79990000000")]
    call(sim, "crm.contact.update", {"id": contact, "fields": {"PHONE": [{"ID": row["ID"], "DELETE": "Y"}]}})
    assert call(sim, "crm.contact.get", {"id": contact}).json()["result"]["PHONE"] == []


def test_phone_filter_is_a_raw_prefix_on_the_first_value(sim: Bitrix24Simulator) -> None:
    plain = add(sim, "A", "79131234567")
    pretty = add(sim, "B", "+7 (913) 123-45-67")
    longer = add(sim, "C", "791312345678")

    def ids(value: object) -> list[int]:
        rows = call(sim, "crm.contact.list", {"filter": {"PHONE": value}, "select": ["ID"]}).json()["result"]
        return [int(r["ID"]) for r in rows]

    assert ids("79131234567") == [plain, longer]  # prefix over-matches
    assert ids("+7 (913)") == [pretty]
    assert ids("89131234567") == []
    assert ids(["+7 (913) 123-45-67", "79131234567"]) == [pretty]  # only the first value counts


def test_findbycomm(sim: Bitrix24Simulator) -> None:
    pretty = add(sim, "Pretty", "+7 (913) 123-45-67 доб. 12")
    plain = add(sim, "Plain", "79131234567")

    def find(params: dict) -> requests.Response:
        return call(sim, "crm.duplicate.findbycomm", params)

    found = find({"type": "PHONE", "values": ["7 913 123 45 67 ext. 5"], "entity_type": "CONTACT"}).json()
    assert found["result"] == {"CONTACT": [pretty, plain]}
    assert find({"type": "PHONE", "values": ["89131234567"]}).json()["result"] == []
    bare = find({"type": "PHONE", "values": "79131234567"})
    assert (
        bare.status_code == 400 and bare.json()["error_description"] == "Communication values is not defined"
    )
    assert find({"type": "PHONE", "values": [str(79000000000 + i) for i in range(21)]}).status_code == 400
    assert find({"type": "PHONE", "values": ["1"], "entity_type": "DEAL"}).status_code == 400
    assert "not supported" in find({"type": "FAX", "values": ["1"]}).json()["error_description"]


def test_userfields_prefix_and_not_idempotent(sim: Bitrix24Simulator) -> None:
    for name in ("ACCOUNT", "UF_CITY"):
        assert call(
            sim, "crm.contact.userfield.add", {"fields": {"FIELD_NAME": name, "USER_TYPE_ID": "string"}}
        ).ok
    again = call(
        sim,
        "crm.contact.userfield.add",
        {"fields": {"FIELD_NAME": "UF_CRM_ACCOUNT", "USER_TYPE_ID": "string"}},
    )
    bad = call(
        sim, "crm.contact.userfield.add", {"fields": {"FIELD_NAME": "bad name", "USER_TYPE_ID": "string"}}
    )
    names = [f["FIELD_NAME"] for f in call(sim, "crm.contact.userfield.list").json()["result"]]
    assert (
        names == ["UF_CRM_ACCOUNT", "UF_CRM_CITY"]
        and again.status_code == 400
        and bad.json()["error"] == "ERROR_CORE"
    )


def test_batch_semantics(sim: Bitrix24Simulator) -> None:
    empty = call(sim, "batch", {"halt": 0, "cmd": {"a": "crm.contact.list?select[]=ID"}}).json()["result"]
    assert empty["result"] == {"a": []} and empty["result_error"] == [] and empty["result_next"] == []
    chained = call(
        sim,
        "batch",
        {
            "halt": 0,
            "cmd": [
                "crm.contact.add?fields[NAME]=Chain",
                "crm.contact.get?id=$result[0]",
                "crm.contact.list?filter[ID]=$result[0]",
                "crm.contact.get?id=$result[2][0][ID]",
            ],
        },
    ).json()
    assert isinstance(chained["result"]["result"], list) and chained["result"]["result"][3]["NAME"] == "Chain"
    assert chained["result"]["result_total"] == {"2": 1} and set(chained["time"]) == TIME_KEYS
    halted = call(
        sim, "batch", {"halt": 1, "cmd": {"x": "crm.contact.get?id=0", "y": "crm.contact.add?fields[NAME]=Y"}}
    )
    assert halted.status_code == 200 and list(halted.json()["result"]["result_error"]) == ["x"]
    assert halted.json()["result"]["result"] == []
    too_long = call(sim, "batch", {"cmd": {str(i): "crm.contact.list" for i in range(51)}})
    assert too_long.json()["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"
    nested = call(sim, "batch", {"cmd": {"n": "batch?cmd[a]=crm.contact.list"}}).json()["result"][
        "result_error"
    ]
    assert nested["n"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"


def test_leaky_bucket_counts_requests_not_commands(sim: Bitrix24Simulator) -> None:
    sim.configure(rate_limit=True, rate=1, burst=4)
    batch = {"cmd": {str(i): f"crm.contact.add?fields[NAME]=B{i}" for i in range(50)}}
    statuses = [call(sim, "batch", batch).status_code for _ in range(4)]
    refused = call(sim, "crm.contact.list")
    assert statuses == [200] * 4 and len(sim.portal.contacts) == 200
    assert (refused.status_code, refused.json()) == (
        503,
        {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
    )
    deadline = time.monotonic() + 5
    while call(sim, "crm.contact.list").status_code != 200:  # drains at 1 request/s
        assert time.monotonic() < deadline


def test_operating_time_limit_is_per_method(sim: Bitrix24Simulator) -> None:
    sim.configure(operation_time_limit=5)
    sim.dispatcher.extra_cost["crm.contact.list"] = 3.0  # each call "takes" 3 s of portal time
    first = call(sim, "crm.contact.list").json()
    second = call(sim, "crm.contact.list").json()
    assert first["time"]["operating"] >= 3 and second["time"]["operating"] >= 6
    blocked = call(sim, "crm.contact.list")
    assert (blocked.status_code, blocked.json()["error"]) == (429, "OPERATION_TIME_LIMIT")
    assert call(sim, "crm.contact.userfield.list").status_code == 200
    inner = call(sim, "batch", {"cmd": {"a": "crm.contact.list", "b": "crm.contact.userfield.list"}}).json()[
        "result"
    ]
    assert inner["result_error"]["a"]["error"] == "OPERATION_TIME_LIMIT" and "b" in inner["result"]


def test_webhook_cannot_use_app_methods(sim: Bitrix24Simulator) -> None:
    for method, params in (
        ("imconnector.register", {"ID": "x"}),
        ("event.bind", {"event": "ONCRMCONTACTADD"}),
    ):
        answer = call(sim, method, params)
        assert (answer.status_code, answer.json()["error"]) == (403, "WRONG_AUTH_TYPE")
    wrong = requests.post(
        sim.webhook_url.replace(sim.portal.webhook_secret, "nope") + "crm.contact.list", timeout=5
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "NO_AUTH_FOUND")


def test_oauth_code_flow_expiry_and_rotation(sim: Bitrix24Simulator) -> None:
    creds = sim.oauth
    redirect = requests.get(
        creds.authorize_url,
        params={"client_id": creds.client_id, "state": "s1", "redirect_uri": "https://app.example/cb"},
        allow_redirects=False,
        timeout=5,
    )
    assert redirect.status_code == 302
    query = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert query["state"] == ["s1"] and query["member_id"] == [creds.member_id]
    token = requests.get(
        creds.token_url,
        params={
            "grant_type": "authorization_code",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret,
            "code": query["code"][0],
        },
        timeout=5,
    ).json()
    assert token["expires_in"] == 3600 and token["client_endpoint"] == creds.client_endpoint
    assert {
        "access_token",
        "refresh_token",
        "expires",
        "server_endpoint",
        "member_id",
        "scope",
        "status",
    } <= set(token)
    endpoint = token["client_endpoint"]
    ok = requests.post(f"{endpoint}crm.contact.list.json", json={"auth": token["access_token"]}, timeout=5)
    assert ok.status_code == 200
    assert (
        requests.post(
            f"{endpoint}imconnector.status.json", json={"auth": token["access_token"]}, timeout=5
        ).status_code
        != 403
    )
    missing = requests.post(f"{endpoint}crm.contact.list.json", json={}, timeout=5)
    invalid = requests.post(f"{endpoint}crm.contact.list.json", json={"auth": "garbage"}, timeout=5)
    assert (missing.status_code, missing.json()["error"]) == (401, "NO_AUTH_FOUND")
    assert (invalid.status_code, invalid.json()["error"]) == (401, "invalid_token")
    requests.post(f"{sim.url}/_sandbox/oauth/expire", timeout=5)
    expired = requests.get(f"{endpoint}crm.contact.list", params={"auth": token["access_token"]}, timeout=5)
    assert (expired.status_code, expired.json()["error"]) == (401, "expired_token")
    refresh = {
        "grant_type": "refresh_token",
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
        "refresh_token": token["refresh_token"],
    }
    rotated = requests.get(creds.token_url, params=refresh, timeout=5).json()
    assert rotated["refresh_token"] != token["refresh_token"]
    assert requests.get(creds.token_url, params=refresh, timeout=5).json()["error"] == "invalid_grant"
    assert requests.post(
        f"{endpoint}crm.contact.list.json", json={"auth": rotated["access_token"]}, timeout=5
    ).ok
    used_code = requests.get(
        creds.token_url,
        params={**refresh, "grant_type": "authorization_code", "code": query["code"][0]},
        timeout=5,
    )
    assert used_code.json()["error"] == "invalid_grant"


def test_control_api_faults_calls_and_reset(sim: Bitrix24Simulator) -> None:
    control = f"{sim.url}/_sandbox"
    add(sim, "Ctl", "79130000009")
    fault = requests.post(
        f"{control}/faults",
        json={"kind": "error", "status": 500, "method": "crm.contact.get", "count": 1},
        timeout=5,
    ).json()
    assert (
        fault["kind"] == "error"
        and requests.get(f"{control}/faults", timeout=5).json()[0]["id"] == fault["id"]
    )
    assert call(sim, "crm.contact.get", {"id": 1}).status_code == 500
    assert call(sim, "crm.contact.get", {"id": 1}).status_code == 200
    requests.post(
        f"{control}/faults",
        json={"kind": "commit_then_timeout", "method": "crm.contact.add", "count": 1, "seconds": 1.0},
        timeout=5,
    )
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{sim.webhook_url}crm.contact.add.json", json={"fields": {"NAME": "Late"}}, timeout=0.3
        )
    assert [c["NAME"] for c in requests.get(f"{control}/contacts", timeout=5).json()] == ["Ctl", "Late"]
    requests.post(f"{control}/faults", json={"kind": "storm", "seconds": 0.5}, timeout=5)
    assert call(sim, "crm.contact.list").json()["error"] == "QUERY_LIMIT_EXCEEDED"
    requests.delete(f"{control}/faults", timeout=5)
    assert call(sim, "crm.contact.list").status_code == 200
    calls = requests.get(f"{control}/calls", timeout=5).json()
    assert calls["counts"]["crm.contact.get"] == 2 and calls["rate_limited"] == 1
    assert requests.get(f"{control}/contacts/1", timeout=5).json()["PHONE"][0]["VALUE"] == "79130000009"
    assert requests.post(f"{control}/settings", json={"burst": 7}, timeout=5).json()["burst"] == 7
    requests.post(f"{control}/reset", timeout=5)
    assert requests.get(f"{control}/contacts", timeout=5).json() == []
    assert requests.get(f"{control}/calls", timeout=5).json()["requests"] == 0


def test_im_chat_and_message(sim: Bitrix24Simulator) -> None:
    contact = add(sim, "Chat")
    chat = call(
        sim, "im.chat.add", {"TITLE": "T", "ENTITY_TYPE": "CRM", "ENTITY_ID": f"CONTACT|{contact}"}
    ).json()["result"]
    message = call(sim, "im.message.add", {"DIALOG_ID": f"chat{chat}", "MESSAGE": "hi"}).json()["result"]
    assert isinstance(chat, int) and isinstance(message, int)
    assert (
        call(sim, "im.message.add", {"DIALOG_ID": f"chat{chat}", "MESSAGE": ""}).json()["error"]
        == "MESSAGE_EMPTY"
    )
    comment = call(
        sim,
        "crm.timeline.comment.add",
        {"fields": {"ENTITY_ID": contact, "ENTITY_TYPE": "contact", "COMMENT": "c"}},
    )
    assert isinstance(comment.json()["result"], int)
    orphan = call(
        sim,
        "crm.timeline.comment.add",
        {"fields": {"ENTITY_ID": 999, "ENTITY_TYPE": "contact", "COMMENT": "c"}},
    )
    assert orphan.json()["error"] == "OWNER_NOT_FOUND"


def test_unrouted_paths_and_methods_answer_plain_text(sim: Bitrix24Simulator) -> None:
    """The app is FastAPI, but its JSON ``{"detail": ...}`` and generated docs never reach the wire."""
    for path in ("/nope", "/docs", "/openapi.json", "/_sandbox/docs", "/_sandbox/contacts/abc"):
        answer = requests.get(sim.url + path, timeout=5)
        assert (answer.status_code, answer.text) == (404, "Not Found"), path
        assert answer.headers["content-type"].startswith("text/plain"), path
    wrong = requests.put(f"{sim.webhook_url}crm.contact.list", timeout=5)
    assert (wrong.status_code, wrong.text) == (405, "Method Not Allowed")
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


def test_two_portals_keep_their_own_state() -> None:
    """Handlers live at module level; each reaches the simulator of the app that serves the request."""
    with Bitrix24Simulator(rate_limit=False) as first, Bitrix24Simulator(rate_limit=False) as second:
        created = call(first, "crm.contact.add", {"fields": {"NAME": "Only in the first"}}).json()["result"]
        assert call(second, "crm.contact.get", {"id": created}).status_code == 400
        assert requests.get(f"{second.url}/_sandbox/contacts", timeout=5).json() == []
        other = requests.post(
            f"{second.url}/rest/1/{first.portal.webhook_secret}/crm.contact.list", timeout=5
        )
        assert other.status_code == 401
        creds = requests.get(f"{second.url}/_sandbox/credentials", timeout=5).json()
        assert creds["webhook_url"] == second.webhook_url != first.webhook_url


def test_cli_is_a_click_command() -> None:
    assert isinstance(sandbox.bitrix24.cli, click.Command)


@pytest.fixture
def cli_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-c",
            "from tasks.cli import main; main()",
            "sandbox",
            "bitrix24",
            "--port",
            str(port),
            "--no-rate-limit",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    yield proc, port
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


@pytest.mark.process
def test_rdb24_sandbox_bitrix24_serves_and_prints_credentials(
    cli_process: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = cli_process
    lines: list[str] = []
    deadline = time.monotonic() + 30
    assert proc.stdout is not None
    while not any("application_token" in line for line in lines):
        assert time.monotonic() < deadline and proc.poll() is None, lines
        lines.append(proc.stdout.readline())
    webhook = next(line.split()[-1] for line in lines if "webhook URL" in line)
    assert webhook.startswith(f"http://127.0.0.1:{port}/rest/1/")
    assert any("client_secret" in line for line in lines)
    assert requests.post(f"{webhook}crm.contact.list.json", json={}, timeout=5).json()["result"] == []


ATOM = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}"


def oauth_call(sim: Bitrix24Simulator, method: str, params: dict | None = None) -> requests.Response:
    access, _ = sim.issue_tokens()
    return requests.post(
        f"{sim.oauth.client_endpoint}{method}.json", json={**(params or {}), "auth": access}, timeout=10
    )


def post_many(sim: Bitrix24Simulator, chat: int, count: int) -> None:
    for start in range(0, count, 50):
        cmd = {
            str(i): f"im.message.add?DIALOG_ID=chat{chat}&MESSAGE=m{i}"
            for i in range(start, min(start + 50, count))
        }
        assert call(sim, "batch", {"halt": 1, "cmd": cmd}).json()["result"]["result_error"] == []


def test_im_chat_get_finds_the_chat_by_entity_or_answers_null(sim: Bitrix24Simulator) -> None:
    contact = add(sim, "Linked")
    call(sim, "im.chat.add", {"TITLE": "other", "ENTITY_TYPE": "CRM", "ENTITY_ID": "CONTACT|999"})
    chat = call(
        sim, "im.chat.add", {"TITLE": "T", "ENTITY_TYPE": "CRM", "ENTITY_ID": f"CONTACT|{contact}"}
    ).json()["result"]
    found = call(sim, "im.chat.get", {"ENTITY_TYPE": "CRM", "ENTITY_ID": f"CONTACT|{contact}"}).json()
    assert found["result"] == {"ID": chat} and set(found["time"]) == TIME_KEYS
    by_app = oauth_call(sim, "im.chat.get", {"ENTITY_TYPE": "CRM", "ENTITY_ID": f"CONTACT|{contact}"})
    assert (by_app.status_code, by_app.json()["result"]) == (200, {"ID": chat})
    for params in (
        {"ENTITY_TYPE": "CRM", "ENTITY_ID": "CONTACT|424242"},
        {"ENTITY_TYPE": "CRM", "ENTITY_ID": f"LEAD|{contact}"},
        {"ENTITY_ID": f"CONTACT|{contact}"},
        {},
    ):
        answer = call(sim, "im.chat.get", params)
        assert answer.status_code == 200 and "result" in answer.json() and answer.json()["result"] is None
    by_get = requests.get(
        f"{sim.webhook_url}im.chat.get",
        params={"ENTITY_TYPE": "CRM", "ENTITY_ID": f"CONTACT|{contact}"},
        timeout=5,
    )
    assert by_get.json()["result"] == {"ID": chat}
    batched = call(
        sim,
        "batch",
        {
            "halt": 1,
            "cmd": {
                "c": f"im.chat.get?ENTITY_TYPE=CRM&ENTITY_ID=CONTACT%7C{contact}",
                "m": "im.message.add?DIALOG_ID=chat$result[c][ID]&MESSAGE=via%20batch",
            },
        },
    ).json()["result"]
    assert batched["result"]["c"] == {"ID": chat} and isinstance(batched["result"]["m"], int)
    calls = requests.get(f"{sim.url}/_sandbox/calls", timeout=5).json()
    assert calls["counts"]["im.chat.get"] == 7 and calls["inner_counts"]["im.chat.get"] == 1


def test_im_dialog_messages_get_windows_newest_first(sim: Bitrix24Simulator) -> None:
    chat = call(sim, "im.chat.add", {"TITLE": "Dialog"}).json()["result"]
    attach = {"ID": 1, "COLOR_TOKEN": "base", "BLOCKS": [{"MESSAGE": "card"}]}
    first = call(
        sim, "im.message.add", {"DIALOG_ID": f"chat{chat}", "MESSAGE": "[b]first[/b]", "ATTACH": attach}
    )
    first_id = first.json()["result"]
    post_many(sim, chat, 59)  # 60 messages in all
    answer = call(sim, "im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}"})
    assert answer.status_code == 200 and "total" not in answer.json() and "next" not in answer.json()
    result = answer.json()["result"]
    assert set(result) >= {"messages", "users", "files"} and result["files"] == []
    ids = [m["id"] for m in result["messages"]]
    assert len(ids) == 20 and ids == sorted(ids, reverse=True) and ids[0] == first_id + 59
    newest = result["messages"][0]
    assert set(newest) == {"id", "chat_id", "author_id", "date", "text", "params"}
    assert (newest["chat_id"], newest["author_id"], newest["text"], newest["params"]) == (
        chat,
        1,
        "m58",
        None,
    )
    assert re.fullmatch(ATOM, newest["date"])
    assert [u["id"] for u in result["users"]] == [1]
    capped = call(sim, "im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}", "LIMIT": 100}).json()["result"]
    assert len(capped["messages"]) == 50
    older = call(
        sim, "im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}", "LAST_ID": ids[-1], "LIMIT": 50}
    ).json()["result"]["messages"]
    assert [m["id"] for m in older] == list(range(ids[-1] - 1, first_id - 1, -1))
    assert (
        older[-1]["text"] == "[b]first[/b]" and older[-1]["params"]["ATTACH"][0]["BLOCKS"] == attach["BLOCKS"]
    )
    oldest = call(
        sim, "im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}", "FIRST_ID": 0, "LIMIT": 3}
    ).json()
    assert [m["id"] for m in oldest["result"]["messages"]] == [first_id, first_id + 1, first_id + 2]
    newer = requests.get(
        f"{sim.webhook_url}im.dialog.messages.get",
        params={"DIALOG_ID": f"chat{chat}", "FIRST_ID": first_id + 57},
        timeout=5,
    ).json()["result"]["messages"]
    assert [m["id"] for m in newer] == [first_id + 58, first_id + 59]
    by_app = oauth_call(sim, "im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}", "LIMIT": 1})
    assert by_app.status_code == 200 and [m["id"] for m in by_app.json()["result"]["messages"]] == [ids[0]]


def test_im_dialog_messages_get_errors_limits_and_log(sim: Bitrix24Simulator) -> None:
    chat = call(sim, "im.chat.add", {"TITLE": "Errors", "MESSAGE": "hello"}).json()["result"]
    for params, expected in (
        ({}, (400, "DIALOG_ID_EMPTY")),
        ({"DIALOG_ID": "nonsense"}, (400, "DIALOG_ID_EMPTY")),
        ({"DIALOG_ID": f"chat{chat + 100}"}, (403, "ACCESS_ERROR")),
        ({"DIALOG_ID": f"chat{chat}", "FIRST_ID": "abc"}, (400, "FIRST_ID_STRING")),
        ({"DIALOG_ID": f"chat{chat}", "LAST_ID": "-1"}, (400, "LAST_ID_STRING")),
    ):
        answer = call(sim, "im.dialog.messages.get", params)
        assert (answer.status_code, answer.json()["error"]) == expected, params
    sim.configure(rate_limit=True, rate=0.1, burst=3)
    statuses = [
        call(sim, "im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}"}).status_code for _ in range(5)
    ]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [503, 503]
    calls = requests.get(f"{sim.url}/_sandbox/calls", timeout=5).json()
    logged = [c for c in calls["calls"] if c["method"] == "im.dialog.messages.get"]
    assert [c["status"] for c in logged] == [400, 400, 403, 400, 400, 200, 200, 200, 503, 503]
    assert calls["rate_limited"] == 2


def test_connector_messages_carry_their_external_id_as_connector_mid(sim: Bitrix24Simulator) -> None:
    """Two identical texts through the connector stay distinguishable by ``params.CONNECTOR_MID``."""
    icon = {"DATA_IMAGE": "data:image/svg+xml;charset=US-ASCII,x"}
    register = {"ID": "mid", "NAME": "Mid", "ICON": icon, "PLACEMENT_HANDLER": "https://example.org/h"}
    assert oauth_call(sim, "imconnector.register", register).status_code == 200
    assert oauth_call(sim, "imconnector.activate", {"CONNECTOR": "mid", "LINE": "1", "ACTIVE": 1}).ok

    def send(external_id: str) -> int:
        item = {
            "user": {"id": "u1", "name": "Client"},
            "message": {"id": external_id, "date": int(time.time()), "text": "да"},
            "chat": {"id": "c1"},
        }
        answer = oauth_call(
            sim, "imconnector.send.messages", {"CONNECTOR": "mid", "LINE": "1", "MESSAGES": [item]}
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]["DATA"]["RESULT"][0]["session"]["CHAT_ID"]

    chat = send("topic:0:1")
    assert send("topic:0:10") == chat
    rows = oauth_call(sim, "im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}"}).json()["result"][
        "messages"
    ]
    assert [(m["text"], m["params"]["CONNECTOR_MID"]) for m in rows] == [
        ("да", ["topic:0:10"]),
        ("да", ["topic:0:1"]),
    ]


def test_subscriber_files_are_kept_as_the_portal_keeps_them(sim: Bitrix24Simulator) -> None:
    """``message.files``: ``{url, name}`` with the name cut to its last 50 characters; a file without
    an http(s) URL is dropped silently, as a failed download is (facts doc §11)."""
    assert oauth_call(sim, "imconnector.register", {
        "ID": "files", "NAME": "F", "ICON": {"DATA_IMAGE": "data:image/svg+xml;base64,"},
        "PLACEMENT_HANDLER": "https://example.org/h",
    }).status_code == 200  # fmt: skip
    assert oauth_call(sim, "imconnector.activate", {"CONNECTOR": "files", "LINE": "1", "ACTIVE": 1}).ok
    long_name = "x" * 60 + ".jpg"
    files = [{"url": "https://cdn.example/a.jpg", "name": long_name}, {"url": "javascript:alert(1)"}]
    item = {"user": {"id": "u1"}, "message": {"id": "m1", "files": files}, "chat": {"id": "c1"}}
    sent = oauth_call(
        sim, "imconnector.send.messages", {"CONNECTOR": "files", "LINE": "1", "MESSAGES": [item]}
    )
    assert sent.json()["result"]["SUCCESS"] is True, sent.text
    (chat,) = [c for c in sim.chats() if c.get("openline")]
    assert chat["messages"][0]["files"] == [{"url": "https://cdn.example/a.jpg", "name": long_name[-50:]}]


def test_operator_files_and_the_app_lifecycle_events(sim: Bitrix24Simulator) -> None:
    """An operator's file reply carries ``files[]`` with a short ``link``; uninstall revokes tokens and
    forgets connectors and bindings; install hands out a new pair and a new application token."""
    from sandbox.bitrix24.events import build_payload
    from sandbox.bitrix24.forms import unflatten
    from sandbox.bitrix24.messaging import operator_message

    with sim.portal.lock:
        chat_id = len(sim.portal.chats) + 1
        sim.portal.chats[chat_id] = {
            "ID": chat_id, "messages": [], "USERS": [],
            "openline": {"connector": "c", "line": "1", "external_chat_id": "e1", "external_user_id": "u"},
        }  # fmt: skip
    stored = operator_message(sim.portal, chat_id, "", 1, "Анна", [{"name": "plan.pdf", "size": 10}])
    event = unflatten(build_payload(sim.portal, sim.url, stored["chat"], stored["message"], 1))
    (file,) = event["data"]["MESSAGES"][0]["message"]["files"]
    assert event["data"]["MESSAGES"][0]["message"]["text"] == ""
    assert file["name"] == "plan.pdf" and file["size"] == "10" and file["link"].startswith("https://")

    assert oauth_call(sim, "app.info").json()["result"]["CODE"] == sim.oauth.client_id
    assert oauth_call(sim, "event.bind", {"event": "ONAPPUNINSTALL", "handler": "http://127.0.0.1:9/x"}).ok
    old_token = sim.oauth.application_token
    access, _ = sim.issue_tokens()
    gone = requests.post(f"{sim.url}/_sandbox/app/uninstall", timeout=30).json()
    assert [d["handler"] for d in gone["deliveries"]] == ["http://127.0.0.1:9/x"]  # unreachable: logged
    assert sim.openlines()["handlers"] == [] and sim.openlines()["connectors"] == {}
    refused = requests.post(f"{sim.oauth.client_endpoint}app.info.json", json={"auth": access}, timeout=10)
    assert refused.status_code == 401
    again = requests.post(
        f"{sim.url}/_sandbox/app/install", json={"handler": "http://127.0.0.1:9/x"}, timeout=30
    )
    assert again.json()["application_token"] != old_token and "error" in again.json()["delivery"]
    assert oauth_call(sim, "app.info").json()["result"]["INSTALLED"] is True
    assert requests.post(f"{sim.url}/_sandbox/app/install", json={}, timeout=10).status_code == 400


def test_offline_events_queue_until_cleared_and_go_to_one_process_at_a_time(sim: Bitrix24Simulator) -> None:
    """``event.bind`` with ``event_type=offline`` queues the event; ``event.offline.get`` with
    ``clear=0`` hands it to one process id until ``event.offline.clear``; webhooks are refused."""
    icon = {"DATA_IMAGE": "data:image/svg+xml;charset=US-ASCII,x"}
    register = {"ID": "off", "NAME": "Off", "ICON": icon, "PLACEMENT_HANDLER": "https://example.org/h"}
    assert oauth_call(sim, "imconnector.register", register).status_code == 200
    assert oauth_call(sim, "imconnector.activate", {"CONNECTOR": "off", "LINE": "1", "ACTIVE": 1}).ok
    item = {
        "user": {"id": "u9", "name": "Client"},
        "message": {"id": "m1", "date": int(time.time()), "text": "привет"},
        "chat": {"id": "c9"},
    }
    assert oauth_call(
        sim, "imconnector.send.messages", {"CONNECTOR": "off", "LINE": "1", "MESSAGES": [item]}
    ).ok
    assert call(sim, "event.offline.get").status_code == 403  # app context only
    bound = oauth_call(sim, "event.bind", {"event": "ONIMCONNECTORMESSAGEADD", "event_type": "offline"})
    assert bound.json()["result"] is True
    reply = sim.operator_reply("ответ", external_chat_id="c9", connector="off")
    assert reply["deliveries"] == []  # nothing is POSTed for an offline binding

    first = oauth_call(
        sim, "event.offline.get", {"clear": 0, "filter": {"=EVENT_NAME": "ONIMCONNECTORMESSAGEADD"}}
    )
    result = first.json()["result"]
    assert result["process_id"] and len(result["events"]) == 1
    (queued,) = result["events"]
    assert set(queued) == {"ID", "TIMESTAMP_X", "EVENT_NAME", "EVENT_DATA", "EVENT_ADDITIONAL", "MESSAGE_ID"}
    message = queued["EVENT_DATA"]["MESSAGES"][0]
    assert message["im"]["message_id"] == reply["message_id"] and message["chat"]["id"] == "c9"
    assert "ответ" in message["message"]["text"]
    assert oauth_call(sim, "event.offline.get", {"clear": 0}).json()["result"]["events"] == []  # taken
    again = oauth_call(sim, "event.offline.get", {"clear": 0, "process_id": result["process_id"]})
    assert [e["ID"] for e in again.json()["result"]["events"]] == [queued["ID"]]
    cleared = oauth_call(
        sim, "event.offline.clear", {"process_id": result["process_id"], "id": [queued["ID"]]}
    )
    assert cleared.json()["result"] is True
    assert oauth_call(sim, "event.offline.list").json()["result"] == []
