"""The shared leaky bucket: two processes hammering one portal stay at zero 503s and near the rate."""

from __future__ import annotations

import itertools
import multiprocessing
import time
import uuid

import pytest
import redis

from clients.bitrix24.rate_limiter import LocalLeakyBucket, OperatingTime, RedisLeakyBucket
from clients.bitrix24.redis_keys import RedisKeys
from sandbox.bitrix24 import Bitrix24Simulator
from tests.support import bitrix24_processes
from tests.support.bitrix24_fixtures import KEY_PREFIX

KEYS = RedisKeys(KEY_PREFIX)

RATE, BURST, CALLS = 10.0, 5, 30


def test_bucket_reserves_fifo_slots(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    bucket = RedisLeakyBucket(client, KEYS.bucket(uuid.uuid4().hex), rate=10, burst=5, margin=1)
    waits = [bucket.reserve() for _ in range(8)]
    assert waits[:4] == [0.0] * 4  # the burst (less the safety margin) is free
    assert all(0.05 < b - a < 0.15 for a, b in itertools.pairwise(waits[3:]))  # then 1/rate apart


def test_local_bucket_matches() -> None:
    bucket = LocalLeakyBucket(rate=20, burst=3, margin=0)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits[:3] == [0.0] * 3 and 0.04 < waits[3] < 0.06 and 0.09 < waits[4] < 0.11


def test_operating_time_parking_is_shared(redis_url: str) -> None:
    prefix = KEYS.operating(uuid.uuid4().hex)
    one = OperatingTime(redis.Redis.from_url(redis_url), prefix)
    two = OperatingTime(redis.Redis.from_url(redis_url), prefix)
    one.record("crm.contact.list", 12.5, time.time() + 300)
    one.park("crm.contact.add", time.time() + 30)
    assert two.used("crm.contact.list") == 12.5 and two.reset_at("crm.contact.list") is not None
    assert 29 < two.parked_for("crm.contact.add") <= 30 and two.parked_for("crm.contact.list") == 0


@pytest.mark.process
def test_two_processes_share_the_portal_limit(bitrix24_no_faults: Bitrix24Simulator, redis_url: str) -> None:
    sim = bitrix24_no_faults
    config = {
        "key_prefix": KEY_PREFIX,
        "webhook_url": sim.webhook_url,
        "rate": RATE,
        "burst": BURST,
        "limiter_key": uuid.uuid4().hex,
    }
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    go = ctx.Event()
    readies = [ctx.Event() for _ in range(2)]
    procs = [
        ctx.Process(target=bitrix24_processes.hammer, args=(config, redis_url, r, go, results, CALLS))
        for r in readies
    ]
    for proc in procs:
        proc.start()
    try:
        for ready in readies:
            assert ready.wait(60), "worker process did not start"
        sim.configure(rate_limit=True, rate=RATE, burst=BURST)  # also empties the portal's bucket
        before = sim.portal.summary()["rate_limited"]
        go.set()
        outcomes = [results.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    total = sum(o["requests"] for o in outcomes)
    elapsed = max(o["end"] for o in outcomes) - min(o["start"] for o in outcomes)
    floor = (total - BURST) / RATE
    assert sum(o["limited"] for o in outcomes) == 0 and sim.portal.summary()["rate_limited"] == before
    assert total == 2 * CALLS
    assert floor * 0.95 <= elapsed <= floor * 1.25 + 0.5, (elapsed, floor)


def test_background_requests_leave_the_rest_of_the_bucket_to_live_ones(redis_url: str) -> None:
    """Reconciliation (background) fills at most its share; a live request then passes at once,
    and background work waits without holding a reservation that would delay live traffic."""
    from clients.bitrix24.rate_limiter import background

    client = redis.Redis.from_url(redis_url)
    bucket = RedisLeakyBucket(client, KEYS.bucket(uuid.uuid4().hex), rate=2, burst=21, margin=1)
    with background(0.5):  # share of 20 slots: 10
        assert all(bucket.reserve_below(10) == 0.0 for _ in range(10))
        assert bucket.reserve_below(10) > 0.3, "the eleventh background request must wait"
        started = time.monotonic()
        bucket.acquire()  # waits for the bucket to drain below its share, reserving nothing meanwhile
        assert 0.3 < time.monotonic() - started < 1.5
    # Live: the other half is free at once, even though background work is waiting for its share.
    assert all(bucket.reserve() == 0.0 for _ in range(9))
    assert bucket.pressure()[1] > 0.85, "a nearly full bucket reports how full it is"
    for _ in range(3):
        bucket.reserve()
    wait, used = bucket.pressure()
    assert wait > 0 and used > 1.0, "and how long a request would wait for its slot"


def test_local_bucket_background_share() -> None:
    from clients.bitrix24.rate_limiter import background

    bucket = LocalLeakyBucket(rate=100, burst=10, margin=0)
    with background(0.3):
        for _ in range(3):
            bucket.acquire()
        assert bucket.reserve_below(3) > 0
    assert bucket.reserve() == 0.0
