"""Helpers for the flow tests: worker environments, the webhook process, records and simulator reads."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import requests
from celery.result import AsyncResult

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.embedded import free_port, wait_for_port
from sandbox.rosdomofon.server import RosDomofonSimulator
from schemas.kafka import KafkaIncomingMessage

ROOT = Path(__file__).resolve().parents[3]
WAIT = 60.0


def rosdomofon_env(sim: RosDomofonSimulator) -> dict[str, str]:
    return {
        "ROSDOMOFON_BASE_URL": sim.url,
        "ROSDOMOFON_USERNAME": sim.username,
        "ROSDOMOFON_PASSWORD": sim.password,
        "COMPANY_SHORT_NAME": sim.company,
        "ACCOUNTS_INDEX_MIN_REFRESH": "0",
    }


# The test portals run without a rate limit; the client's shared bucket (2 req/s, as a real portal)
# would otherwise pace every flow test to two Bitrix24 calls a second.
UNTHROTTLED = {"BITRIX24_RATE": "200", "BITRIX24_BURST": "1000"}


def openlines_env(sim: Bitrix24Simulator, webhook_url: str) -> dict[str, str]:
    oauth = sim.oauth
    return {
        **UNTHROTTLED,
        "BITRIX24_CLIENT_ENDPOINT": oauth.client_endpoint,
        "BITRIX24_CLIENT_ID": oauth.client_id,
        "BITRIX24_CLIENT_SECRET": oauth.client_secret,
        "BITRIX24_ACCESS_TOKEN": oauth.access_token,
        "BITRIX24_REFRESH_TOKEN": oauth.refresh_token,
        "BITRIX24_APPLICATION_TOKEN": oauth.application_token,
        "CHAT_MODE": "auto",
        "WEBHOOK_PUBLIC_URL": webhook_url,
    }


def crm_chat_env(sim: Bitrix24Simulator) -> dict[str, str]:
    return {**UNTHROTTLED, "BITRIX24_WEBHOOK_URL": sim.webhook_url, "CHAT_MODE": "auto"}


@dataclass
class WebhookServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_webhook(env: dict[str, str], log_path: Path, port: int | None = None) -> WebhookServer:
    """``rdb24 webhook`` as its own process, as production runs it."""
    port = port or free_port()
    env = {"WEBHOOK_SPOOL_DIR": str(log_path.parent / "webhook-spool"), **env}  # never the repo's var/
    log = log_path.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tasks.cli import main; main()",
            "webhook",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    server = WebhookServer(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_for_port("127.0.0.1", port, timeout=30, proc=process)
    except Exception:
        server.stop()
        raise RuntimeError(f"webhook receiver did not start:\n{server.logs()[-3000:]}") from None
    return server


def incoming(abonent_id: int, phone: int, text: str, company_id: int | None = None) -> KafkaIncomingMessage:
    """A MESSAGES_IN record shaped like the real sample: text in localizedPush.message."""
    return KafkaIncomingMessage.model_validate(
        {
            "fromAbonent": {
                "id": abonent_id,
                "phone": phone,
                "companyId": company_id,
                "restrictionPushTokenIds": [],
            },
            "channel": "support",
            "message": None,
            "deliveryMethod": None,
            "toAbonents": None,
            "broadcast": False,
            "waitResponse": True,
            "localizedPush": {"message": text, "messageKey": None, "messageArgs": None},
        }
    )


def wait_result(task_id: str, timeout: float = WAIT) -> Any:
    return AsyncResult(task_id).get(timeout=timeout, propagate=True)


def resend_stalled(older_than: float = 0.0) -> dict[str, Any]:
    """Run the in-flight ledger's sweep now (as beat would) and return its result."""
    from tasks.runtime.app import app

    task = app.send_task("flows.resend_stalled_messages", kwargs={"older_than": older_than})
    return wait_result(task.id)


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"{message} not met within {timeout}s")


def contacts_with_phone(sim: Bitrix24Simulator, phone: str) -> list[dict[str, Any]]:
    rows = requests.get(f"{sim.url}/_sandbox/contacts", timeout=10).json()
    digits = phone.lstrip("+")
    return [c for c in rows if any(str(p.get("VALUE", "")).lstrip("+") == digits for p in c.get("PHONE", []))]


def posts_of(sim: Bitrix24Simulator, message_id_or_text: str) -> list[dict[str, Any]]:
    """Every chat message (CRM chats and Open Lines) whose text contains ``message_id_or_text``."""
    return [
        m for chat in sim.chats() for m in chat["messages"] if message_id_or_text in str(m.get("text", ""))
    ]


def subscriber_with_account(sim: RosDomofonSimulator, index: int) -> tuple[int, int, int]:
    """(abonent id, phone, account id) of the ``index``-th generated account's owner."""
    with sim.world.lock:
        account = sorted(sim.world.accounts.values(), key=lambda a: a.id)[index]
        owner = sim.world.abonents[account.owner_id]
        return owner.id, owner.phone, account.id


def subscriber_without_account(sim: RosDomofonSimulator, phone: int) -> tuple[int, int]:
    with sim.world.lock:
        company_id = next(iter(sim.world.companies))
        abonent = sim.world.add_abonent(phone, company_id)
        return abonent.id, abonent.phone


def queues_drained(client: redis.Redis) -> bool:
    """No flow work queued, reserved or unacked on this module's broker DB."""
    return (
        all(client.llen(q) == 0 for q in ("flows", "bitrix24", "rosdomofon")) and client.hlen("unacked") == 0
    )


__all__ = [
    "WebhookServer",
    "contacts_with_phone",
    "crm_chat_env",
    "incoming",
    "openlines_env",
    "posts_of",
    "queues_drained",
    "resend_stalled",
    "rosdomofon_env",
    "start_webhook",
    "subscriber_with_account",
    "subscriber_without_account",
    "wait_result",
    "wait_until",
]
