"""WorkQueue semantics: dedup, exclusivity, backoff, delayed adds, shutdown (client-go's contract)."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multinic_ctrl.kube.workqueue import (
    BucketRateLimiter,
    FakeClock,
    ItemExponentialRateLimiter,
    MaxOfRateLimiter,
    ShutDown,
    WorkQueue,
    default_rate_limiter,
)
from multinic_ctrl.metrics import WORKQUEUE_ADDS, WORKQUEUE_RETRIES


async def test_key_added_many_times_while_waiting_is_processed_once() -> None:
    q = WorkQueue("t-dedup")
    for _ in range(5):
        q.add("ns/a")
    q.add("ns/b")
    assert len(q) == 2
    assert await q.get() == "ns/a"
    assert await q.get() == "ns/b"
    assert len(q) == 0
    q.done("ns/a")
    q.done("ns/b")
    assert len(q) == 0


async def test_key_readded_while_processing_is_handed_out_again_only_after_done() -> None:
    q = WorkQueue("t-readd")
    q.add("a")
    key = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0, "a key being processed must not be queued for a second worker"
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not second.done()
    q.done(key)
    assert await asyncio.wait_for(second, 1) == "a"
    q.done("a")
    assert len(q) == 0


async def test_fifo_order_of_distinct_keys() -> None:
    q = WorkQueue("t-fifo")
    for key in ["c", "a", "b"]:
        q.add(key)
    assert [await q.get() for _ in range(3)] == ["c", "a", "b"]


async def test_adds_counter_counts_accepted_adds_only() -> None:
    counter = WORKQUEUE_ADDS.labels(name="t-metrics")
    before = counter._value.get()
    q = WorkQueue("t-metrics")
    q.add("a")
    q.add("a")
    q.add("b")
    assert counter._value.get() - before == 2


async def test_getter_blocks_until_add() -> None:
    q = WorkQueue("t-block")
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_cancelled_getter_passes_wakeup_on() -> None:
    q = WorkQueue("t-cancel")
    g1 = asyncio.create_task(q.get())
    g2 = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("x")
    g1.cancel()
    results = await asyncio.gather(g1, g2, return_exceptions=True)
    assert "x" in results


def test_exponential_backoff_grows_to_cap_and_forget_resets() -> None:
    limiter = ItemExponentialRateLimiter(0.005, 1000.0)
    delays = [limiter.when("k") for _ in range(22)]
    assert delays[:5] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert delays[-1] == 1000.0
    assert limiter.num_requeues("k") == 22
    assert limiter.when("other") == pytest.approx(0.005), "backoff is per key"
    limiter.forget("k")
    assert limiter.num_requeues("k") == 0
    assert limiter.when("k") == pytest.approx(0.005)
    for _ in range(200):
        limiter.when("huge")
    assert limiter.when("huge") == 1000.0


def test_token_bucket_allows_burst_then_spaces_requests() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(qps=10, burst=3, clock=clock)
    assert [bucket.when("x") for _ in range(3)] == [0, 0, 0]
    assert bucket.when("x") == pytest.approx(0.1)
    assert bucket.when("x") == pytest.approx(0.2)
    clock._now += 10  # refill completely (capped at burst)
    assert [bucket.when("y") for _ in range(3)] == [0, 0, 0]
    combined = MaxOfRateLimiter(ItemExponentialRateLimiter(), BucketRateLimiter(1, 1, clock))
    assert combined.when("z") == pytest.approx(0.005)
    assert combined.when("z") == pytest.approx(1.0)
    combined.forget("z")
    assert combined.num_requeues("z") == 0


async def test_add_rate_limited_waits_for_backoff_then_forget_resets() -> None:
    clock = FakeClock()
    q = WorkQueue("t-backoff", clock=clock)
    retries = WORKQUEUE_RETRIES.labels(name="t-backoff")
    before = retries._value.get()
    waits = []
    for _ in range(4):
        q.add_rate_limited("k")
        await asyncio.sleep(0)
        assert len(q) == 0
        expected = 0.005 * 2 ** q.num_requeues("k") / 2
        waits.append(expected)
        await clock.advance(expected * 0.9)
        assert len(q) == 0, "must not be ready before its backoff"
        await clock.advance(expected * 0.2)
        assert len(q) == 1
        assert await q.get() == "k"
        q.done("k")
    assert waits == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert retries._value.get() - before == 4
    q.forget("k")
    assert q.num_requeues("k") == 0
    q.add_rate_limited("k")
    await clock.advance(0.0051)
    assert len(q) == 1


async def test_overall_bucket_limits_retry_rate() -> None:
    clock = FakeClock()
    q = WorkQueue("t-bucket", clock=clock, rate_limiter=default_rate_limiter(clock=clock, bucket_qps=1, bucket_burst=2))
    for key in "abcd":
        q.add_rate_limited(key)
    await clock.advance(0.006)
    assert len(q) == 2, "burst of 2 then one per second"
    await clock.advance(1.0)
    assert len(q) == 3
    await clock.advance(1.0)
    assert len(q) == 4


async def test_add_after_releases_keys_in_due_order() -> None:
    clock = FakeClock()
    q = WorkQueue("t-after", clock=clock)
    q.add_after("c", 3)
    q.add_after("a", 1)
    q.add_after("b", 2)
    q.add_after("now", 0)
    assert await q.get() == "now"
    await asyncio.sleep(0)
    assert len(q) == 0
    assert q.waiting_count() == 3
    await clock.advance(1.5)
    assert len(q) == 1
    await clock.advance(10)
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


async def test_add_after_earlier_schedule_wins_and_dedups() -> None:
    clock = FakeClock()
    q = WorkQueue("t-after2", clock=clock)
    q.add_after("k", 10)
    q.add_after("k", 2)
    q.add_after("k", 5)
    assert q.waiting_count() == 1
    await clock.advance(2.1)
    assert len(q) == 1
    await clock.advance(20)
    assert len(q) == 1, "superseded schedules must not add the key again"


async def test_add_after_with_real_clock() -> None:
    q = WorkQueue("t-after-real")
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("k", 0.05)
    assert await asyncio.wait_for(q.get(), 2) == "k"
    assert loop.time() - start >= 0.045


async def test_shutdown_stops_getters_and_waits_for_in_flight_work() -> None:
    q = WorkQueue("t-shutdown")
    q.add("busy")
    q.add("queued")
    busy = await q.get()
    idle_getter_q = WorkQueue("t-shutdown-idle")
    idle = asyncio.create_task(idle_getter_q.get())
    await asyncio.sleep(0)

    async def finish_later() -> None:
        await asyncio.sleep(0.05)
        q.done(busy)

    finisher = asyncio.create_task(finish_later())
    assert await q.shutdown(deadline=2) is True
    await finisher
    with pytest.raises(ShutDown):
        await q.get()
    q.add("late")
    q.add_after("late", 1)
    q.add_rate_limited("late")
    assert len(q) == 0
    assert await idle_getter_q.shutdown(deadline=1) is True
    with pytest.raises(ShutDown):
        await idle


async def test_shutdown_deadline_expires_with_work_in_flight() -> None:
    q = WorkQueue("t-shutdown-deadline")
    q.add("stuck")
    await q.get()
    assert await q.shutdown(deadline=0.05) is False
    q.done("stuck")
    assert await q.shutdown(deadline=0.05) is True


async def _run_property(ops: list[tuple[str, int]], workers: int, seed: int) -> None:
    """Many workers, random adds from outside and from inside reconciles; check the invariants."""
    rng = random.Random(seed)
    q = WorkQueue("t-property")
    in_flight: set[str] = set()
    violations: list[str] = []
    last_add: dict[str, int] = {}
    processed_after: dict[str, int] = {}
    tick = 0

    async def worker() -> None:
        nonlocal tick
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in in_flight:
                violations.append(key)
            in_flight.add(key)
            started = tick
            for _ in range(rng.randint(0, 3)):
                await asyncio.sleep(0)
            if rng.random() < 0.2:
                tick += 1
                last_add[key] = tick
                q.add(key)  # re-add from within the reconcile
            in_flight.discard(key)
            processed_after[key] = max(processed_after.get(key, 0), started)
            q.done(key)

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    for key, pause in ops:
        tick += 1
        last_add[key] = tick
        q.add(key)
        for _ in range(pause):
            await asyncio.sleep(0)
    for _ in range(2000):
        if len(q) == 0 and not q.processing:
            break
        await asyncio.sleep(0)
    assert await q.shutdown(deadline=1)
    await asyncio.gather(*tasks)
    assert not violations, f"keys processed concurrently: {violations}"
    for key, added in last_add.items():
        # the last add of every key must be followed by a processing that started after it
        assert processed_after.get(key, -1) >= added, key


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.integers(0, 3)), min_size=1, max_size=60),
    workers=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_property_one_key_never_processed_concurrently_and_last_add_is_processed(
    ops: list[tuple[str, int]], workers: int, seed: int
) -> None:
    asyncio.run(_run_property(ops, workers, seed))
