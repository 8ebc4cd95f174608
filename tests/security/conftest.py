"""One full run for the security checks: every role up (worker, ingest, beat, webhook, Flower), real
traffic with faults, an operator reply, a dead letter and the CLI; DEBUG logs everywhere.

The run is shared by the module's tests (scope ``package``): the scan reads everything it produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from sandbox.stack.embedded import free_port
from tests.faults.harness import Stack, StackOptions

WEBHOOK_MAX_BODY = 16 * 1024


@dataclass
class SecureRun:
    stack: Stack
    webhook_url: str
    flower_url: str
    metrics_urls: list[str]

    @property
    def flower_auth(self) -> tuple[str, str]:
        return ("admin", self.stack.secrets.flower_password)


def _drive(run: SecureRun) -> None:
    stack = run.stack
    assert stack.sims is not None
    rosdomofon, bitrix24 = stack.sims.rosdomofon, stack.sims.bitrix24
    subscribers = stack.subscribers(5)
    stack.send(10, subscribers)
    stack.wait_delivered(90)
    # Faults that make clients re-authenticate and retry: the paths most likely to print a token.
    rosdomofon.expire_tokens()
    bitrix24.expire_access_tokens()
    bitrix24.inject(
        "error", method="imconnector.send.messages", count=2, status=500, code="INTERNAL_SERVER_ERROR"
    )
    bitrix24.inject("error", method="imconnector.send.messages", count=1, status=400, code="ERROR_ARGUMENT")
    stack.send(10, subscribers + stack.sims.add_subscribers_without_account(2))
    stack.wait_until(lambda: len(stack.posts().lost) <= 1, 90, "posts after the faults")
    # An operator reply: event (with the application token and an access token) -> webhook -> task.
    abonent_id = subscribers[0][0]
    reply = bitrix24.operator_reply("operator answer", external_chat_id=f"abonent-{abonent_id}")
    deliveries = reply["deliveries"]
    assert deliveries and all(d.get("status") == 200 for d in deliveries), reply
    stack.wait_until(
        lambda: any("operator answer" in m.text and not m.incoming for m in rosdomofon.history(abonent_id)),
        60,
        "reply delivered",
    )
    for args in (("dlq", "list"), ("tasks",), ("status",)):
        stack.cli(*args)
    for letter in stack.dead_letters():
        stack.cli("dlq", "show", letter.id)
    stack.wait_settled()
    requests.get(f"{run.flower_url}/api/tasks", auth=run.flower_auth, timeout=10)


@pytest.fixture(scope="package")
def secure_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRun]:
    webhook_port, flower_port, metrics_port, ingest_metrics = (free_port() for _ in range(4))
    options = StackOptions(
        accounts=10,
        log_level="DEBUG",
        env={
            "WEBHOOK_PUBLIC_URL": f"http://127.0.0.1:{webhook_port}",  # the product appends /bitrix24/events
            "WEBHOOK_MAX_BODY": str(WEBHOOK_MAX_BODY),
            "FLOWER_PORT": str(flower_port),
        },
    )
    stack = Stack(tmp_path_factory.mktemp("secure"), options).start()
    try:
        stack.worker("worker1", METRICS_PORT=str(metrics_port))
        stack.ingest(INGEST_METRICS_PORT=str(ingest_metrics))
        stack.beat()
        stack.webhook(webhook_port)
        stack.flower(flower_port)
        run = SecureRun(
            stack=stack,
            webhook_url=f"http://127.0.0.1:{webhook_port}/bitrix24/events",
            flower_url=f"http://127.0.0.1:{flower_port}",
            metrics_urls=[
                f"http://127.0.0.1:{metrics_port}/metrics",
                f"http://127.0.0.1:{ingest_metrics}/metrics",
            ],
        )
        _drive(run)
        yield run
    finally:
        stack.close()
