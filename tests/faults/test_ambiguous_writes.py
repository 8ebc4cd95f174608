"""Scenario 6: "commit then time out": Bitrix24 performs the write, the caller sees a timeout.

On contact creation the product must look the contact up before trying again (one contact per
subscriber); on chat posting it must not post the message a second time.
"""

from __future__ import annotations

from tests.faults.conftest import StackFactory
from tests.faults.harness import StackOptions
from tests.faults.scenario import finish, now

CLIENT_TIMEOUT = 1.5  # BITRIX24_TIMEOUT; the portal answers after 3 s, having committed


def test_commit_then_timeout_on_contact_and_chat_post(stack_factory: StackFactory) -> None:
    stack = stack_factory(StackOptions(env={"BITRIX24_TIMEOUT": str(CLIENT_TIMEOUT)}))
    assert stack.sims is not None
    bitrix24 = stack.sims.bitrix24
    bitrix24.inject("commit_then_timeout", method="crm.contact.add", count=3, seconds=3.0)
    bitrix24.inject("commit_then_timeout", method="imconnector.send.messages", count=3, seconds=3.0)
    stack.worker("worker1", concurrency=3)
    stack.ingest()
    stack.send(30, stack.subscribers(10))
    finish(stack, "6 commit-then-timeout", fault_ended_at=now(), deliver_timeout=120)
    fired = {f["method"]: f for f in bitrix24.faults.listing()}
    assert not fired, f"the injected ambiguous writes never all happened: {fired}"
