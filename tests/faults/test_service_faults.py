"""Scenario 5: Bitrix24 rate-limit storm and 5xx bursts; RosDomofon 5xx, 429 and token expiry mid-run.

Every fault is transient, so every message must still be posted exactly once and nothing may be
dead-lettered: retries by cause (backoff, Retry-After, re-authentication) absorb them all.
"""

from __future__ import annotations

from tests.faults.conftest import StackFactory
from tests.faults.harness import StackOptions
from tests.faults.scenario import finish, now

STORM_SECONDS = 3.0


def test_rate_limit_storm_5xx_bursts_and_token_expiry(stack_factory: StackFactory) -> None:
    # A zero refresh interval makes every message of a subscriber without an account call RosDomofon,
    # so the RosDomofon faults below meet real traffic all through the run.
    stack = stack_factory(StackOptions(env={"ACCOUNTS_INDEX_MIN_REFRESH": "0"}))
    assert stack.sims is not None
    rosdomofon, bitrix24 = stack.sims.rosdomofon, stack.sims.bitrix24
    subscribers = stack.subscribers(8) + stack.sims.add_subscribers_without_account(4)
    rosdomofon.faults.update(fail_next=3, fail_status=503, rate_limit_next=2, retry_after="1")
    stack.worker("worker1", concurrency=3)
    stack.ingest()
    stack.send(20, subscribers)
    stack.wait_until(lambda: stack.posts().expected - len(stack.posts().lost) >= 3, 60, "first posts")
    bitrix24.inject("storm", seconds=STORM_SECONDS)
    bitrix24.inject(
        "error", method="imconnector.send.messages", count=3, status=500, code="INTERNAL_SERVER_ERROR"
    )
    bitrix24.inject("error", method="crm.duplicate.findbycomm", count=3, status=502, code="")
    rosdomofon.expire_tokens()
    rosdomofon.faults.update(fail_next=3, fail_status=502)
    stack.send(20, subscribers)
    fault_end = now() + STORM_SECONDS
    finish(stack, "5 storm + 5xx + token expiry", fault_ended_at=fault_end, deliver_timeout=120)
    assert rosdomofon.tokens.issued >= 2, "the expired RosDomofon token was never replaced"
