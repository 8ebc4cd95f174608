"""Effect markers and locks against a real Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tasks import effects


def test_marker_lifecycle_keeps_result_and_counts_attempts(redis_client: redis.Redis, unique: str) -> None:
    assert effects.recall(redis_client, unique, "post") is None
    assert effects.mark_started(redis_client, unique, "post") is None
    previous = effects.mark_started(redis_client, unique, "post")
    assert previous is not None and previous.state == "started" and previous.attempts == 1
    effects.mark_done(redis_client, unique, "post", {"chat_id": 7})
    marker = effects.recall(redis_client, unique, "post")
    assert marker is not None and marker.done and marker.result == {"chat_id": 7} and marker.attempts == 2
    # A done marker is never downgraded by a late duplicate run.
    again = effects.mark_started(redis_client, unique, "post")
    assert again is not None and again.done
    assert effects.recall(redis_client, unique, "post").done  # type: ignore[union-attr]


def test_markers_are_per_step(redis_client: redis.Redis, unique: str) -> None:
    effects.mark_done(redis_client, unique, "contact", {"contact_id": 1})
    assert effects.recall(redis_client, unique, "post") is None


def test_phone_lock_serialises_holders(redis_client: redis.Redis, unique: str) -> None:
    inside = 0
    peak = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, peak
        with effects.phone_lock(redis_client, f"7913{unique[:7]}", timeout=10, wait=10):
            with guard:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.05)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert peak == 1


def test_busy_lock_raises_a_retry_later_error(redis_client: redis.Redis, unique: str) -> None:
    with (
        effects.locked(redis_client, unique, timeout=5, wait=0.1),
        pytest.raises(effects.LockBusyError) as caught,
        effects.locked(redis_client, unique, timeout=5, wait=0.2),
    ):
        pass
    assert caught.value.retry_after == 1.0


def test_expired_lock_is_not_released_by_its_old_holder(redis_client: redis.Redis, unique: str) -> None:
    with effects.locked(redis_client, unique, timeout=0.2, wait=1):
        time.sleep(0.3)  # our lock expired; someone else takes it
        other = redis_client.lock(f"{effects.LOCK_PREFIX}:{unique}", timeout=5)
        assert other.acquire(blocking=False)
    # Leaving the block must not have deleted the other holder's lock.
    assert other.owned()
    other.release()
