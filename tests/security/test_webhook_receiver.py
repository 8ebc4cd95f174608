"""The webhook receiver refuses forged or unauthenticated events (and enqueues nothing for them),
bounds the request size (413, also for a chunked body that declares no length) and answers malformed
bodies with a 4xx, never a 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import requests

from tests.security.conftest import WEBHOOK_MAX_BODY, SecureRun

FORGED_MESSAGE_ID = 987654


def event(token: str | None, message_id: int = FORGED_MESSAGE_ID, text: str = "hi") -> dict[str, str]:
    form = {
        "event": "ONIMCONNECTORMESSAGEADD",
        "data[CONNECTOR]": "rosdomofon",
        "data[LINE]": "1",
        "data[MESSAGES][0][im][chat_id]": "4242",
        "data[MESSAGES][0][im][message_id]": str(message_id),
        "data[MESSAGES][0][message][user_id]": "1",
        "data[MESSAGES][0][message][text]": text,
        "data[MESSAGES][0][chat][id]": "abonent-1",
    }
    if token is not None:
        form["auth[application_token]"] = token
    return form


def enqueued(run: SecureRun, message_id: int) -> bool:
    client = run.stack.redis()
    return bool(client.exists(f"rdb24:reply:enqueued:reply:4242:{message_id}")) or bool(
        client.exists(f"celery-task-meta-reply:4242:{message_id}")
    )


@pytest.mark.parametrize(
    "token", [None, "", "forged-token", "b24app" + "0" * 24], ids=["missing", "empty", "forged", "lookalike"]
)
def test_forged_or_missing_token_is_refused_and_nothing_enqueued(
    secure_run: SecureRun, token: str | None
) -> None:
    response = requests.post(secure_run.webhook_url, data=event(token), timeout=10)
    assert response.status_code in (401, 403), response.status_code
    assert not enqueued(secure_run, FORGED_MESSAGE_ID)


def test_oversized_body_is_413(secure_run: SecureRun) -> None:
    token = secure_run.stack.secrets.bitrix24_application_token
    body = urlencode(event(token, message_id=111, text="x" * (WEBHOOK_MAX_BODY + 1)))
    response = requests.post(
        secure_run.webhook_url,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert response.status_code == 413
    assert not enqueued(secure_run, 111)


def test_oversized_chunked_body_without_length_is_413(secure_run: SecureRun) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"event=ONIMCONNECTORMESSAGEADD&data[MESSAGES][0][message][text]="
        for _ in range(WEBHOOK_MAX_BODY // 1024 + 4):
            yield b"y" * 1024

    response = requests.post(
        secure_run.webhook_url,
        data=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe\x00garbage", "application/x-www-form-urlencoded"),
        (b'{"event": "ONIMCONNECTORMESSAGEADD"}', "application/json"),
        (b"", "application/x-www-form-urlencoded"),
        (b"event=ONIMCONNECTORMESSAGEADD&data[MESSAGES]=notalist", "application/x-www-form-urlencoded"),
    ],
    ids=["binary", "json", "empty", "wrong-shape"],
)
def test_malformed_body_is_4xx(secure_run: SecureRun, body: bytes, content_type: str) -> None:
    response = requests.post(
        secure_run.webhook_url, data=body, headers={"Content-Type": content_type}, timeout=10
    )
    assert 400 <= response.status_code < 500, response.status_code


def test_malformed_event_with_valid_token_is_4xx_naming_the_field(secure_run: SecureRun) -> None:
    form = event(secure_run.stack.secrets.bitrix24_application_token, message_id=222)
    del form["data[MESSAGES][0][im][chat_id]"]
    response = requests.post(secure_run.webhook_url, data=form, timeout=10)
    assert 400 <= response.status_code < 500, response.status_code
    assert "chat_id" in response.text, response.text
    assert not enqueued(secure_run, 222)
