"""Install and go: the Bitrix24 local app's install handshake, uninstall and reinstall, over the portal
simulator, a real webhook receiver process, a real worker and Redis. No token is configured by hand:
the worker and the receiver get only the app's client id, secret and portal endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import requests

from sandbox.bitrix24 import Bitrix24Simulator
from sandbox.rosdomofon.server import RosDomofonSimulator
from sandbox.stack.embedded import free_port
from tasks.flows.incoming_message import enqueue_incoming_message
from tasks.state import app_install, held
from tests.support.celery_worker import CeleryWorker
from tests.support.kafka_records import incoming
from tests.support.simulators import UNTHROTTLED, posts_of, rosdomofon_env, subscriber_with_account
from tests.support.waiting import wait_result, wait_until
from tests.support.webhook_process import WebhookServer, start_webhook

pytestmark = [pytest.mark.timeout(180), pytest.mark.process]


@pytest.fixture(scope="module")
def app_env(
    module_redis_url: str,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    worker_base_env: dict[str, str],
) -> dict[str, str]:
    port = free_port()
    oauth = b24_sim.oauth
    return {
        **worker_base_env,
        **rosdomofon_env(rd_sim),
        **UNTHROTTLED,
        # The app's identity only: the tokens arrive with ONAPPINSTALL.
        "BITRIX24_CLIENT_ENDPOINT": oauth.client_endpoint,
        "BITRIX24_CLIENT_ID": oauth.client_id,
        "BITRIX24_CLIENT_SECRET": oauth.client_secret,
        "CHAT_MODE": "auto",
        "WEBHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "REDIS_URL": module_redis_url,
        "WEBHOOK_PORT": str(port),
    }


@pytest.fixture(scope="module")
def webhook(app_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookServer]:
    server = start_webhook(
        app_env, tmp_path_factory.mktemp("webhook") / "webhook.log", int(app_env["WEBHOOK_PORT"])
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(
    app_env: dict[str, str], webhook: WebhookServer, celery_worker_factory: Callable[..., CeleryWorker]
) -> Iterator[CeleryWorker]:
    started = celery_worker_factory(app_env)
    yield started
    started.stop()


def _events_url(webhook: WebhookServer) -> str:
    return f"{webhook.url}/bitrix24/events"


def _setup_state(sim: Bitrix24Simulator) -> tuple[list[str], list[bool]]:
    state = sim.openlines()
    return sorted(h["event"] for h in state["handlers"]), [a["active"] for a in state["active"]]


def _reply_reaches(
    rd_sim: RosDomofonSimulator, b24_sim: Bitrix24Simulator, abonent_id: int, text: str
) -> None:
    outcome = b24_sim.operator_reply(text, external_chat_id=f"abonent-{abonent_id}", operator_name="Анна")
    assert outcome["deliveries"] and outcome["deliveries"][0]["status"] == 200, outcome
    wait_until(
        lambda: [m for m in rd_sim.history(abonent_id, "support") if not m.incoming and text in m.text],
        message="operator reply in the subscriber's history",
    )


def test_forged_install_is_refused_and_stores_nothing(
    worker: CeleryWorker, webhook: WebhookServer, module_redis: redis.Redis, unique: str
) -> None:
    form = {
        "event": "ONAPPINSTALL",
        "data[VERSION]": "1",
        "auth[access_token]": f"forged-{unique}",
        "auth[refresh_token]": f"forged-{unique}",
        "auth[application_token]": f"forged-{unique}",
        "auth[client_endpoint]": "http://attacker.example/rest/",
    }
    response = requests.post(_events_url(webhook), data=form, timeout=30)
    assert response.status_code == 403
    assert app_install.state(module_redis) is None
    assert unique not in webhook.logs()


def test_install_uninstall_reinstall_over_the_simulator(
    worker: CeleryWorker,
    webhook: WebhookServer,
    module_redis: redis.Redis,
    rd_sim: RosDomofonSimulator,
    b24_sim: Bitrix24Simulator,
    unique: str,
) -> None:
    abonent_id, phone, _ = subscriber_with_account(rd_sim, 0)

    # Install: tokens stored, connector registered, line active, events bound, all at once.
    installed = b24_sim.install_app(_events_url(webhook))
    assert installed["delivery"]["status"] == 200, installed
    assert installed["delivery"]["body"]["status"] == "installed"
    assert app_install.state(module_redis) == app_install.INSTALLED
    assert _setup_state(b24_sim) == (["ONAPPUNINSTALL", "ONIMCONNECTORMESSAGEADD"], [True])
    first = wait_result(
        enqueue_incoming_message(incoming(abonent_id, phone, f"до {unique}"), f"MESSAGES_IN_SK_SB:0:{unique}")
    )
    assert first["mode"] == "openlines" and not first["held"]
    _reply_reaches(rd_sim, b24_sim, abonent_id, f"ответ один {unique}")  # checked with the installed token

    # Uninstall: Open Lines posting stops safely; the message is held, not dropped or dead-lettered.
    uninstalled = b24_sim.uninstall_app()
    assert [d["status"] for d in uninstalled["deliveries"]] == [200], uninstalled
    assert app_install.state(module_redis) == app_install.UNINSTALLED
    while_gone = f"MESSAGES_IN_SK_SB:1:{unique}"
    result = wait_result(
        enqueue_incoming_message(incoming(abonent_id, phone, f"пока нет {unique}"), while_gone)
    )
    assert result["held"] is True
    assert list(held.held(module_redis)) == [while_gone]
    assert not posts_of(b24_sim, f"пока нет {unique}")

    # Reinstall: everything set up again, with the new application token; the held message posted.
    again = b24_sim.install_app(_events_url(webhook))
    assert again["delivery"]["status"] == 200 and again["delivery"]["body"]["released"] == 1, again
    assert again["application_token"] != installed["application_token"]
    assert _setup_state(b24_sim) == (["ONAPPUNINSTALL", "ONIMCONNECTORMESSAGEADD"], [True])
    posted = wait_until(lambda: posts_of(b24_sim, f"пока нет {unique}"), message="held message posted")
    assert len(posted) == 1 and held.count(module_redis) == 0
    _reply_reaches(rd_sim, b24_sim, abonent_id, f"ответ два {unique}")


def test_an_event_with_the_old_installs_token_is_refused_after_a_reinstall(
    worker: CeleryWorker, webhook: WebhookServer, b24_sim: Bitrix24Simulator, unique: str
) -> None:
    first = b24_sim.install_app(_events_url(webhook))
    second = b24_sim.install_app(_events_url(webhook))
    assert second["delivery"]["status"] == 200
    form: dict[str, Any] = {
        "event": "ONIMCONNECTORMESSAGEADD",
        "data[CONNECTOR]": "rosdomofon",
        "data[LINE]": "1",
        "data[MESSAGES][0][im][chat_id]": "1",
        "data[MESSAGES][0][im][message_id]": "1",
        "data[MESSAGES][0][message][text]": unique,
        "data[MESSAGES][0][chat][id]": "abonent-1",
        "auth[application_token]": first["application_token"],
    }
    assert requests.post(_events_url(webhook), data=form, timeout=30).status_code == 403


def test_an_uninstall_with_a_wrong_token_is_refused_and_changes_nothing(
    worker: CeleryWorker, webhook: WebhookServer, module_redis: redis.Redis, b24_sim: Bitrix24Simulator
) -> None:
    assert b24_sim.install_app(_events_url(webhook))["delivery"]["status"] == 200
    form = {"event": "ONAPPUNINSTALL", "data[CLEAN]": "0", "auth[application_token]": "not-the-token"}
    assert requests.post(_events_url(webhook), data=form, timeout=30).status_code == 403
    assert app_install.state(module_redis) == app_install.INSTALLED
