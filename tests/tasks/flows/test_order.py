"""Order per subscriber at the post step: who waits for whom, for how long, and what ends a wait
(real Redis, no worker; the whole flow under faults is scenario 12 of the fault table)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from schemas.flows import PostToChatPayload, SubscriberMessage
from tasks.errors import LockBusyError, PredecessorPendingError
from tasks.flows.chat import wait_for_turn
from tasks.runtime import retry_policy
from tasks.runtime.retry_policy import Cause
from tasks.settings import Settings
from tasks.state import effects, order

T0 = 1_760_000_000.0


@pytest.fixture
def settings() -> Settings:
    return Settings().model_copy(update={"order_wait_max": 30.0, "max_retries": 2})


@pytest.fixture
def abonent(redis_client: redis.Redis, unique: str) -> Iterator[int]:
    abonent_id = int(unique[:6], 16) + 1
    yield abonent_id
    redis_client.delete(order.queue_key(abonent_id), order.waiting_key(abonent_id))


def message(abonent_id: int, unique: str, n: int, sent_at: float | None) -> PostToChatPayload:
    """The post step's payload for the subscriber's ``n``-th message."""
    written = SubscriberMessage(
        message_id=f"ORDER:{unique}:{n}",
        abonent_id=abonent_id,
        phone="79130000000",
        text=f"m{n}",
        sent_at=sent_at,
    )
    return PostToChatPayload(phone=written.phone, contact_id=5, message=written)


def enter(client: redis.Redis, post: PostToChatPayload) -> None:
    m = post.message
    assert m.sent_at is not None
    order.enter(client, m.abonent_id, m.message_id, m.sent_at, ttl=60)


def test_a_later_message_waits_for_an_earlier_one_until_it_is_posted(
    redis_client: redis.Redis, abonent: int, unique: str, settings: Settings
) -> None:
    # Entered in arrival order 2, 1 (another partition was slower): the timestamp decides.
    second, first = message(abonent, unique, 2, T0 + 0.001), message(abonent, unique, 1, T0)
    enter(redis_client, second)
    enter(redis_client, first)
    wait_for_turn(redis_client, first, settings)  # nothing written before it: goes at once
    with pytest.raises(PredecessorPendingError) as raised:
        wait_for_turn(redis_client, second, settings)
    assert first.message.message_id in str(raised.value)
    assert 0 < (raised.value.retry_after or 0) <= 5.0
    order.leave(redis_client, abonent, first.message.message_id)  # first posted
    wait_for_turn(redis_client, second, settings)
    assert order.pending(redis_client, abonent) == [second.message.message_id]


def test_equal_timestamps_are_ordered_by_message_id_so_exactly_one_goes_first(
    redis_client: redis.Redis, abonent: int, unique: str, settings: Settings
) -> None:
    a, b = message(abonent, unique, 1, T0), message(abonent, unique, 2, T0)
    enter(redis_client, a)
    enter(redis_client, b)
    wait_for_turn(redis_client, a, settings)
    with pytest.raises(PredecessorPendingError):
        wait_for_turn(redis_client, b, settings)


def test_a_predecessor_whose_post_marker_is_done_is_removed_not_waited_for(
    redis_client: redis.Redis, abonent: int, unique: str, settings: Settings
) -> None:
    # The worker died between marking the post done and leaving the queue.
    first, second = message(abonent, unique, 1, T0), message(abonent, unique, 2, T0 + 1)
    enter(redis_client, first)
    enter(redis_client, second)
    effects.mark_done(redis_client, first.message.message_id, "post", {"chat_id": 1}, ttl=60)
    try:
        wait_for_turn(redis_client, second, settings)
        assert order.pending(redis_client, abonent) == [second.message.message_id]
    finally:
        redis_client.delete(effects.marker_key(first.message.message_id, "post"))


def test_a_dead_lettered_predecessor_releases_its_successors(
    redis_client: redis.Redis, abonent: int, unique: str, settings: Settings
) -> None:
    first, second = message(abonent, unique, 1, T0), message(abonent, unique, 2, T0 + 1)
    enter(redis_client, first)
    enter(redis_client, second)
    # What the dead-letter path calls with the failed step's payload (a contact step's, here).
    contact_step = {"phone": first.phone, "message": first.message.model_dump()}
    order.release(redis_client, first.message.message_id, contact_step)
    wait_for_turn(redis_client, second, settings)


def test_the_wait_is_bounded_from_the_first_wait(
    redis_client: redis.Redis, abonent: int, unique: str, settings: Settings
) -> None:
    first, second = message(abonent, unique, 1, T0), message(abonent, unique, 2, T0 + 1)
    enter(redis_client, first)
    enter(redis_client, second)
    with pytest.raises(PredecessorPendingError):
        wait_for_turn(redis_client, second, settings)
    parked = json.loads(redis_client.hget(order.waiting_key(abonent), second.message.message_id))
    assert abs(parked["since"] - time.time()) < 5
    # As if the first wait had begun longer ago than the bound: posted anyway, out of order.
    parked["since"] = time.time() - 31
    redis_client.hset(order.waiting_key(abonent), second.message.message_id, json.dumps(parked))
    wait_for_turn(redis_client, second, settings)
    # The overtaken first message holds up no later one any more (it posts whenever it can).
    assert order.pending(redis_client, abonent) == [second.message.message_id]
    order.leave(redis_client, abonent, second.message.message_id)
    third = message(abonent, unique, 3, T0 + 2)
    enter(redis_client, third)
    wait_for_turn(redis_client, third, settings)


def test_messages_without_a_timestamp_or_with_the_bound_off_never_wait(
    redis_client: redis.Redis, abonent: int, unique: str, settings: Settings
) -> None:
    enter(redis_client, message(abonent, unique, 1, T0))
    wait_for_turn(redis_client, message(abonent, unique, 2, None), settings)
    off = settings.model_copy(update={"order_wait_max": 0.0})
    wait_for_turn(redis_client, message(abonent, unique, 3, T0 + 1), off)


def test_waiting_is_retried_outside_every_retry_budget(settings: Settings) -> None:
    wait = PredecessorPendingError("earlier message pending", retry_after=0.5)
    spent = {Cause.TRANSIENT.value: 1, Cause.WAITING.value: 500}
    decision = retry_policy.decide(wait, spent, settings)
    assert decision.retry and decision.cause is Cause.WAITING and decision.countdown == 0.5
    # 500 waits did not use up the transient budget (MAX_RETRIES=2): one transient retry is left.
    transient = retry_policy.decide(LockBusyError("busy"), spent, settings)
    assert transient.retry and transient.cause is Cause.TRANSIENT
    assert not retry_policy.decide(LockBusyError("busy"), {**spent, "transient": 2}, settings).retry


def test_a_waiting_post_is_parked_with_its_payload_for_the_post_before_it_to_post_in_turn(
    redis_client: redis.Redis, abonent: int, unique: str, settings: Settings
) -> None:
    first, second = message(abonent, unique, 1, T0), message(abonent, unique, 2, T0 + 1)
    enter(redis_client, first)
    enter(redis_client, second)
    assert order.next_parked(redis_client, abonent) is None  # the head is not waiting
    with pytest.raises(PredecessorPendingError):
        wait_for_turn(redis_client, second, settings)
    assert order.next_parked(redis_client, abonent) is None  # the head is still the first message
    order.leave(redis_client, abonent, first.message.message_id)  # what the first post does when done
    parked = order.next_parked(redis_client, abonent)
    assert parked is not None and parked[0] == second.message.message_id
    assert PostToChatPayload.model_validate(parked[1]) == second  # enough to post it in turn
    wait_for_turn(redis_client, second, settings)  # its turn: no longer parked
    assert order.next_parked(redis_client, abonent) is None
