"""Fingerprints, the run lock and the userfield marker against a real Redis."""

from __future__ import annotations

import time

import redis

from tasks.reconcile import mapping as m
from tasks.reconcile.fields import ENSURED_KEY, SPECS, ensure_fields
from tasks.reconcile.fingerprint import FingerprintStore, Stored, fingerprint
from tasks.reconcile.lock import RunLock
from tests.tasks.reconcile.factories import account


def test_fingerprint_changes_with_any_owned_value_only() -> None:
    base = fingerprint(m.desired_contact(account(1)))
    assert base == fingerprint(m.desired_contact(account(1)))
    assert base != fingerprint(m.desired_contact(account(1, blocked=True)))
    assert base != fingerprint(m.desired_contact(account(1, phone=79990000000)))


def test_store_round_trip_and_forget(redis_client: redis.Redis, unique: str) -> None:
    store = FingerprintStore(redis_client, key=f"test:{unique}:fp")
    store.save({1: Stored(40, "abc"), 2: Stored(41, "def")})
    assert store.load() == {1: Stored(40, "abc"), 2: Stored(41, "def")}
    store.forget([1])
    assert store.load() == {2: Stored(41, "def")}
    store.clear()
    assert store.load() == {}


def test_run_lock_excludes_a_second_run_and_survives_past_its_ttl(
    redis_client: redis.Redis, unique: str
) -> None:
    key = f"test:{unique}:lock"
    first = RunLock(redis_client, ttl=0.6, key=key)
    second = RunLock(redis_client, ttl=0.6, key=key)
    assert first.acquire()
    try:
        time.sleep(1.5)  # > 2x the TTL: only the heartbeat keeps it
        assert not second.acquire()
        assert not first.lost
    finally:
        first.release()
    assert second.acquire()
    second.release()


def test_run_lock_of_a_dead_holder_lapses(redis_client: redis.Redis, unique: str) -> None:
    key = f"test:{unique}:lock"
    redis_client.set(key, "someone-killed", px=300)  # a holder whose heartbeat died with it
    lock = RunLock(redis_client, ttl=5, key=key)
    assert not lock.acquire()
    deadline = time.monotonic() + 3
    while not lock.acquire():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lock.release()


def test_userfields_are_created_once_in_one_batch_and_remembered(
    redis_client: redis.Redis, b24_sim, b24_client, portal
) -> None:
    redis_client.delete(ENSURED_KEY)
    b24_client.call(
        "crm.contact.userfield.add", {"fields": {"FIELD_NAME": "RD_PHONE", "USER_TYPE_ID": "string"}}
    )
    assert ensure_fields(b24_client, redis_client)
    assert not ensure_fields(b24_client, redis_client)  # remembered: no request at all
    calls = portal.calls()
    assert calls["counts"] == {"crm.contact.userfield.add": 1, "crm.contact.userfield.list": 1, "batch": 1}
    assert calls["inner_counts"] == {"crm.contact.userfield.add": len(SPECS) - 1}
    assert ensure_fields(b24_client, redis_client, force=True)  # all exist now: list only
    assert portal.calls()["counts"]["crm.contact.userfield.list"] == 2
    assert portal.calls()["inner_counts"] == {"crm.contact.userfield.add": len(SPECS) - 1}
    names = {row["FIELD_NAME"] for row in b24_client.call("crm.contact.userfield.list", {})}
    assert set(m.USERFIELDS) <= names


def test_every_mapped_userfield_has_a_spec() -> None:
    assert tuple(s.FIELD_NAME for s in SPECS) == m.USERFIELDS


def test_run_lock_taken_by_another_is_no_longer_held(redis_client: redis.Redis, unique: str) -> None:
    from tasks.errors import LeaseLostError

    key = f"test:{unique}:lock"
    lock = RunLock(redis_client, ttl=5, key=key)
    assert lock.acquire()
    try:
        lock.ensure_held()
        redis_client.set(key, "the-next-run")  # lapsed while we were stopped, then taken
        try:
            lock.ensure_held()
        except LeaseLostError:
            pass
        else:
            raise AssertionError("ensure_held passed on a lock held by another run")
        assert lock.lost
    finally:
        lock.release()
    assert redis_client.get(key) in ("the-next-run", b"the-next-run")  # theirs is left alone
