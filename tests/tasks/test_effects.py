"""Effect markers and locks against a real Redis."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from tasks.errors import LeaseLostError, LockBusyError
from tasks.state import effects

ROOT = Path(__file__).resolve().parents[2]


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
        pytest.raises(LockBusyError) as caught,
        effects.locked(redis_client, unique, timeout=5, wait=0.2),
    ):
        pass
    assert caught.value.retry_after == 1.0


def test_lock_lost_while_held_is_not_released_by_its_old_holder(
    redis_client: redis.Redis, unique: str
) -> None:
    key = f"{effects.LOCK_PREFIX}:{unique}"
    with effects.locked(redis_client, unique, timeout=5, wait=1):
        redis_client.delete(key)  # the lease is gone (e.g. Redis restarted without the key)...
        other = redis_client.lock(key, timeout=5)
        assert other.acquire(blocking=False)  # ...and someone else holds it now
    # Leaving the block must not have deleted the other holder's lock.
    assert other.owned()
    other.release()


def test_live_holder_keeps_the_lock_past_its_lease(redis_client: redis.Redis, unique: str) -> None:
    """The keep-alive renews the short lease: a block may run far longer than the lease."""
    lease = 0.3
    with effects.locked(redis_client, unique, timeout=lease, wait=1):
        time.sleep(lease * 4)  # the duration of a long block is the input here, not an awaited event
        with (
            pytest.raises(LockBusyError),
            effects.locked(redis_client, unique, timeout=lease, wait=0.2),
        ):
            pass
    assert not effects.is_locked(redis_client, unique)


HOLD_AND_WAIT = """
import sys, time, redis
from tasks.state import effects
client = redis.Redis.from_url(sys.argv[1])
with effects.locked(client, sys.argv[2], timeout=float(sys.argv[3]), wait=5):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.process
def test_lock_of_a_killed_holder_frees_within_one_lease(redis_url: str, unique: str) -> None:
    """kill -9 stops the keep-alive with the holder: the others wait one lease, not a worst case."""
    lease = 1.0
    client = redis.Redis.from_url(redis_url)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_WAIT, redis_url, unique, str(lease)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        holder.kill()
        holder.wait(10)
        killed_at = time.monotonic()
        with effects.locked(client, unique, timeout=lease, wait=lease * 5):
            waited = time.monotonic() - killed_at
    finally:
        holder.kill()
    assert waited <= lease + 0.5


def test_a_marker_of_another_message_under_the_same_id_is_never_done(
    redis_client: redis.Redis, unique: str
) -> None:
    """An id reused by another message (other fingerprint): logged, counted, treated as absent."""
    from tasks.runtime import metrics

    metrics.use_redis(redis_client)
    try:
        before = metrics.MESSAGE_ID_CONFLICTS.value(step="post")
        effects.mark_done(redis_client, unique, "post", {"chat_id": 7}, fingerprint="a" * 64)
        assert effects.recall(redis_client, unique, "post", "a" * 64).done  # type: ignore[union-attr]
        assert effects.recall(redis_client, unique, "post", "b" * 64) is None
        # The other message starts afresh: no "previous run", so nothing taken as already posted.
        assert effects.mark_started(redis_client, unique, "post", fingerprint="b" * 64) is None
        marker = effects.recall(redis_client, unique, "post", "b" * 64)
        assert marker is not None and marker.state == "started" and marker.fingerprint == "b" * 64
        assert metrics.MESSAGE_ID_CONFLICTS.value(step="post") - before == 2
        # Without a fingerprint to compare (an old caller), the marker is read as before.
        assert effects.recall(redis_client, unique, "post") is not None
    finally:
        metrics.use_redis(None)


def _steal(client: redis.Redis, name: str) -> None:
    """What a successor does once our lease lapsed: the key is gone and holds someone else's token."""
    key = f"{effects.LOCK_PREFIX}:{name}"
    client.delete(key)
    assert client.lock(key, timeout=5).acquire(blocking=False)


def test_ensure_held_passes_while_ours_and_raises_once_taken(redis_client: redis.Redis, unique: str) -> None:
    with effects.locked(redis_client, unique, timeout=5, wait=1) as lease:
        lease.ensure_held()
        _steal(redis_client, unique)
        with pytest.raises(LeaseLostError) as caught:
            lease.ensure_held()
        # Final: even if the key came back empty, a lapse once seen is not forgotten.
        redis_client.delete(f"{effects.LOCK_PREFIX}:{unique}")
        assert not lease.held()
    assert caught.value.retry_after == 1.0


def test_marker_writes_under_a_lost_lease_leave_the_successors_marker(
    redis_client: redis.Redis, unique: str
) -> None:
    with effects.locked(redis_client, f"post:{unique}", timeout=5, wait=1) as lease:
        assert effects.mark_started(redis_client, unique, "post", lease=lease) is None
        _steal(redis_client, f"post:{unique}")
        effects.mark_done(redis_client, unique, "post", {"chat_id": 2})  # the successor's result
        with pytest.raises(LeaseLostError):
            effects.mark_done(redis_client, unique, "post", {"chat_id": 1}, lease=lease)
        with pytest.raises(LeaseLostError):
            effects.mark_started(redis_client, unique, "other", lease=lease)
    marker = effects.recall(redis_client, unique, "post")
    assert marker is not None and marker.result == {"chat_id": 2}
    assert effects.recall(redis_client, unique, "other") is None


def test_marker_writes_under_a_held_lease_land(redis_client: redis.Redis, unique: str) -> None:
    with effects.locked(redis_client, f"post:{unique}", timeout=5, wait=1) as lease:
        effects.mark_started(redis_client, unique, "post", lease=lease, ttl=60)
        effects.mark_done(redis_client, unique, "post", {"chat_id": 3}, lease=lease, ttl=60)
    marker = effects.recall(redis_client, unique, "post")
    assert marker is not None and marker.done and marker.result == {"chat_id": 3}
    assert 0 < redis_client.ttl(effects.marker_key(unique, "post")) <= 60


def test_keeper_marks_an_expired_lease_lost(redis_client: redis.Redis, unique: str) -> None:
    """The holder was stopped past its lease: the keeper's renewal fails and the block is fenced."""
    with effects.locked(redis_client, unique, timeout=0.6, wait=1) as lease:
        _steal(redis_client, unique)
        deadline = time.monotonic() + 5
        while lease._lost.is_set() is False and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease._lost.is_set()
        with pytest.raises(LeaseLostError):
            lease.ensure_held()


class _Portal:
    """A directory whose create commits after someone else's, as a stopped worker's request does."""

    def __init__(self, existing: list[int], created: int) -> None:
        self.ids = list(existing)
        self.created = created
        self.deleted: list[int] = []

    def create_contact(self, fields: dict) -> int:
        self.ids.append(self.created)
        return self.created

    def call(self, method: str, params: dict | None = None) -> object:
        assert params is not None
        if method == "crm.duplicate.findbycomm":  # every spelling of the one phone: all its contacts
            return {"CONTACT": sorted(self.ids)}
        assert method == "crm.contact.delete"
        self.ids.remove(params["id"])
        self.deleted.append(params["id"])
        return True


def test_keep_oldest_deletes_our_newer_duplicate_only(unique: str) -> None:
    from tasks.flows.contact import _keep_oldest

    late = _Portal(existing=[10, 12], created=12)  # the successor's 10 came first
    assert _keep_oldest(late, "79130000000", 12) == 10
    assert late.deleted == [12] and late.ids == [10]
    first = _Portal(existing=[12, 15], created=12)  # ours is the older: the other creator removes its own
    assert _keep_oldest(first, "79130000000", 12) == 12
    assert first.deleted == []
