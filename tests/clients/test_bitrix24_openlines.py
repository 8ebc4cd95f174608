"""Open Lines round trip: register, bind, activate, send; the operator's reply arrives as a real
form-encoded POST at a real HTTP receiver, verifies, and is reported delivered."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode

import pytest
import requests

from clients.bitrix24 import (
    Bitrix24Client,
    Bitrix24InputError,
    parse_connector_event,
    verify_application_token,
)
from sandbox.bitrix24 import Bitrix24Simulator
from schemas.bitrix24 import ConnectorEvent

CONNECTOR = "rdb24"


class Receiver:
    """A tiny event endpoint: parses, verifies the application token, answers 200 or 403."""

    def __init__(self, expected_token: str) -> None:
        self.events: queue.Queue[tuple[bool, ConnectorEvent, str]] = queue.Queue()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event = parse_connector_event(body)
                ok = verify_application_token(event, expected_token)
                receiver.events.put((ok, event, self.headers.get("Content-Type", "")))
                self.send_response(200 if ok else 403)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bitrix24/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(bitrix24_sim: Bitrix24Simulator) -> Iterator[Receiver]:
    server = Receiver(bitrix24_sim.oauth.application_token)
    yield server
    server.close()


def _setup_line(client: Bitrix24Client, handler: str) -> str:
    assert client.register_connector(CONNECTOR, "RosDomofon", "https://example.org/connector-ui")
    assert client.bind_event("ONIMCONNECTORMESSAGEADD", handler)
    line = client.list_open_lines()[0]["ID"]
    assert client.activate_connector(CONNECTOR, line)
    return str(line)


def test_open_lines_round_trip(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_oauth_client: Bitrix24Client, receiver: Receiver
) -> None:
    client = bitrix24_oauth_client
    line = _setup_line(client, receiver.url)
    sent = client.send_connector_messages(
        CONNECTOR,
        line,
        [
            {
                "user": {
                    "id": "abonent-55",
                    "name": "Ivan",
                    "last_name": "Petrov",
                    "skip_phone_validate": "Y",
                },
                "message": {"id": "topic:0:17", "date": int(time.time()), "text": "Domofon is broken"},
                "chat": {"id": "abonent-55", "name": "Ivan Petrov"},
            }
        ],
    )
    assert sent.SUCCESS and sent.DATA.RESULT[0].SUCCESS
    session = sent.DATA.RESULT[0].session
    assert session is not None and session.CHAT_ID
    operator_view = requests.get(f"{bitrix24_fresh.url}/_sandbox/openlines", timeout=5).json()
    thread = operator_view["chats"][f"{CONNECTOR}|{line}|abonent-55"]
    assert thread["chat_id"] == session.CHAT_ID and thread["messages"][0]["text"] == "Domofon is broken"

    reply = requests.post(
        f"{bitrix24_fresh.url}/_sandbox/operator/reply",
        json={"external_chat_id": "abonent-55", "text": "We are on it", "operator_name": "Anna"},
        timeout=15,
    ).json()
    assert reply["deliveries"] == [{"handler": receiver.url, "status": 200}]
    verified, event, content_type = receiver.events.get(timeout=10)
    assert verified and content_type == "application/x-www-form-urlencoded"
    message = event.data.MESSAGES[0]
    assert (
        event.event == "ONIMCONNECTORMESSAGEADD"
        and event.data.CONNECTOR == CONNECTOR
        and line == event.data.LINE
    )
    assert message.im.chat_id == session.CHAT_ID and message.im.message_id == reply["message_id"]
    assert message.chat.id == "abonent-55" and "We are on it" in message.message.text

    assert client.send_delivery_status(
        CONNECTOR,
        line,
        [
            {
                "im": message.im.to_wire(),
                "message": {"id": ["rd-1"], "date": int(time.time())},
                "chat": {"id": "abonent-55"},
            }
        ],
    )
    stored = next(c for c in bitrix24_fresh.chats() if c["ID"] == session.CHAT_ID)["messages"][-1]
    assert stored["id"] == reply["message_id"] and stored["delivered"] is True


def test_crm_tracker_links_a_new_dialog_to_the_contact_with_its_phone(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_oauth_client: Bitrix24Client
) -> None:
    """``imopenlines.crm.chat.get`` leads from a contact back to the dialog the tracker linked to it:
    how a post whose answer (the chat id) was lost is found again."""
    client = bitrix24_oauth_client
    line = _setup_line(client, "https://example.org/events")
    subscriber = client.create_contact({"NAME": "Ivan", "PHONE": [{"VALUE": "8 (913) 555-01-02"}]})
    stranger = client.create_contact({"NAME": "Other", "PHONE": [{"VALUE": "79135550103"}]})
    item = {
        "user": {"id": "abonent-56", "name": "Ivan", "phone": "+79135550102", "skip_phone_validate": "Y"},
        "message": {"id": "topic:0:18", "date": int(time.time()), "text": "Hello"},
        "chat": {"id": "abonent-56"},
    }
    session = client.send_connector_messages(CONNECTOR, line, [item]).DATA.RESULT[0].session
    assert session is not None and session.CHAT_ID

    chats = client.crm_open_line_chats("contact", subscriber)
    assert [(c.CHAT_ID, c.CONNECTOR_ID, c.CONNECTOR_TITLE) for c in chats] == [
        (session.CHAT_ID, CONNECTOR, "RosDomofon")
    ]
    assert client.crm_open_line_chats("contact", stranger) == []
    assert client.crm_open_line_chats("lead", subscriber) == []
    with pytest.raises(Bitrix24InputError, match="CRM_ENTITY_TYPE"):
        client.crm_open_line_chats("invoice", subscriber)


def test_forged_application_token_is_rejected(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_oauth_client: Bitrix24Client, receiver: Receiver
) -> None:
    client = bitrix24_oauth_client
    line = _setup_line(client, receiver.url)
    client.send_connector_messages(
        CONNECTOR, line, [{"user": {"id": "u1"}, "message": {"id": "m1", "text": "hi"}, "chat": {"id": "u1"}}]
    )
    bitrix24_fresh.operator_reply("genuine", external_chat_id="u1")
    ok, genuine, _ = receiver.events.get(timeout=10)
    assert ok
    pairs = [(k, "forged" if k == "auth[application_token]" else v) for k, v in parse_qsl(_form_of(genuine))]
    answer = requests.post(
        receiver.url,
        data=urlencode(pairs),
        timeout=5,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 403
    ok, forged, _ = receiver.events.get(timeout=10)
    assert not ok and forged.auth.application_token == "forged"
    assert not verify_application_token(genuine, "")


def _form_of(event: ConnectorEvent) -> str:
    message = event.data.MESSAGES[0]
    return urlencode(
        {
            "event": event.event,
            "data[CONNECTOR]": event.data.CONNECTOR,
            "data[LINE]": event.data.LINE,
            "data[MESSAGES][0][im][chat_id]": message.im.chat_id,
            "data[MESSAGES][0][im][message_id]": message.im.message_id,
            "data[MESSAGES][0][message][text]": message.message.text,
            "data[MESSAGES][0][chat][id]": message.chat.id,
            "auth[application_token]": event.auth.application_token,
        }
    )


def test_inactive_line_and_missing_blocks_are_input_errors(
    bitrix24_fresh: Bitrix24Simulator, bitrix24_oauth_client: Bitrix24Client
) -> None:
    client = bitrix24_oauth_client
    client.register_connector(CONNECTOR, "RosDomofon", "https://example.org/ui")
    with pytest.raises(Bitrix24InputError) as inactive:
        client.send_connector_messages(
            CONNECTOR, "1", [{"user": {"id": "u"}, "message": {"id": "m"}, "chat": {"id": "c"}}]
        )
    assert inactive.value.code == "NOT_ACTIVE_LINE"
    client.activate_connector(CONNECTOR, "1")
    with pytest.raises(Bitrix24InputError) as missing:
        client.call(
            "imconnector.send.messages",
            {"CONNECTOR": CONNECTOR, "LINE": "1", "MESSAGES": [{"user": {"id": "u"}}]},
        )
    assert missing.value.code == "ERROR_ARGUMENT"


def test_malformed_event_is_a_clear_input_error() -> None:
    with pytest.raises(Bitrix24InputError, match="data"):
        parse_connector_event(b"event=ONIMCONNECTORMESSAGEADD&auth%5Bapplication_token%5D=x")
