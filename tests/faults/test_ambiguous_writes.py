"""Scenario 6: "commit then time out": Bitrix24 performs the write, the caller sees a timeout.

On contact creation the product must look the contact up before trying again (one contact per
subscriber); on chat posting it must not post the message a second time.
"""

from __future__ import annotations

from tests.faults import report
from tests.faults.conftest import StackFactory
from tests.faults.harness import StackOptions
from tests.faults.scenario import finish, now

CLIENT_TIMEOUT = 1.5  # BITRIX24_TIMEOUT; the portal answers after 3 s, having committed


def test_commit_then_timeout_on_contact_and_chat_post(stack_factory: StackFactory) -> None:
    stack = stack_factory(StackOptions(env={"BITRIX24_TIMEOUT": str(CLIENT_TIMEOUT)}))
    assert stack.sims is not None
    bitrix24 = stack.sims.bitrix24
    # New subscribers' contacts are created in a ``batch`` (crm.contact.add commands) and their
    # messages posted many per imconnector.send.messages: both batched writes commit, then time out.
    bitrix24.inject("commit_then_timeout", method="batch", count=3, seconds=3.0)
    bitrix24.inject("commit_then_timeout", method="imconnector.send.messages", count=3, seconds=3.0)
    stack.worker("worker1", concurrency=3)
    stack.ingest()
    stack.send(30, stack.subscribers(10))
    finish(stack, "6 commit-then-timeout", fault_ended_at=now(), deliver_timeout=120)
    fired = {f["method"]: f for f in bitrix24.faults.listing()}
    assert not fired, f"the injected ambiguous writes never all happened: {fired}"


def test_repeated_text_after_an_interrupted_post_is_not_swallowed(stack_factory: StackFactory) -> None:
    """A subscriber writes the same words twice ("да", "ok"); the second post fails once (5xx, so
    the outcome is unknown). The retry's "was it already posted?" check must not take the FIRST
    message for the second one: both must reach the chat."""
    stack = stack_factory()
    assert stack.sims is not None
    rosdomofon, bitrix24 = stack.sims.rosdomofon, stack.sims.bitrix24
    stack.worker("worker1")
    stack.ingest()
    (abonent_id, _phone), *_ = stack.subscribers(1)
    text = f"{stack.run}-same words"

    def posts_of_text() -> int:
        return sum(1 for posted in stack.sims.posted_texts() if text in posted)  # type: ignore[union-attr]

    rosdomofon.send_from_subscriber(abonent_id, text)
    stack.wait_until(lambda: posts_of_text() == 1, 60, "the first message posted")
    bitrix24.inject("error", method="imconnector.send.messages", count=1, status=503, code="")
    rosdomofon.send_from_subscriber(abonent_id, text)
    fault_end = now()
    stack.wait_until(lambda: not bitrix24.faults.listing(), 60, "the 503 served to the second post")
    stack.wait_settled()
    recovered = None
    try:
        recovered = stack.wait_until(lambda: posts_of_text() == 2, 20, "the second identical message posted")
    finally:
        count = posts_of_text()
        report.record(
            report.ScenarioOutcome(
                scenario="6b same text twice, 503 on 2nd post",
                messages=2,
                lost=max(0, 2 - count),
                duplicated=max(0, count - 2),
                dead_lettered=len(stack.dead_letters()),
                recovery_s=None if recovered is None else now() - fault_end,
            )
        )
    assert posts_of_text() == 2
