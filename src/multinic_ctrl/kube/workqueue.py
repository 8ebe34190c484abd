"""A rate-limited, delaying work queue of string keys with client-go's semantics, on asyncio.

Invariants (the reason this exists instead of an `asyncio.Queue`):

* **dedup** - a key added any number of times while it waits is handed out once (`dirty` set);
* **exclusive** - a key is never handed to two workers at once (`processing` set); a key re-added while a
  worker holds it is parked in `dirty` and queued again only when that worker calls `done`, so the newest
  state is always reconciled once more after the change that triggered it;
* **per-key backoff** - `add_rate_limited` waits 5 ms, 10 ms, 20 ms ... capped at 1000 s, until `forget`
  resets it; an optional token bucket caps the overall retry rate so a mass failure does not hammer the
  apiserver/OpenStack;
* **graceful shutdown** - no new work is handed out, in-flight work may finish within a deadline.

Time comes from an injectable `Clock` so tests can drive backoff and `add_after` without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Awaitable
from typing import Protocol

import structlog

from multinic_ctrl.metrics import (
    WORKQUEUE_ADDS,
    WORKQUEUE_DEPTH,
    WORKQUEUE_QUEUE_DURATION,
    WORKQUEUE_RETRIES,
    WORKQUEUE_WORK_DURATION,
)

log = structlog.get_logger(__name__)


class ShutDown(Exception):
    """Raised by `WorkQueue.get` once the queue is shutting down: the worker should exit."""


class Clock(Protocol):
    """Time source for the queue and rate limiters (monotonic seconds)."""

    def now(self) -> float: ...

    def sleep(self, delay: float) -> Awaitable[None]: ...


class LoopClock:
    """The event loop's monotonic clock; the default."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def sleep(self, delay: float) -> Awaitable[None]:
        return asyncio.sleep(max(0.0, delay))


class FakeClock:
    """A manually advanced clock for tests: `sleep` resolves when `advance` passes its deadline."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def sleep(self, delay: float) -> Awaitable[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if delay <= 0:
            future.set_result(None)
        else:
            heapq.heappush(self._sleepers, (self._now + delay, next(self._seq), future))
        return future

    async def advance(self, seconds: float) -> None:
        """Move time forward, wake due sleepers and let the woken tasks run."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)


class RateLimiter(Protocol):
    """How long a key should wait before its next retry (client-go's `RateLimiter`)."""

    def when(self, key: str) -> float: ...

    def forget(self, key: str) -> None: ...

    def num_requeues(self, key: str) -> int: ...


class ItemExponentialRateLimiter:
    """Per-key exponential backoff: base * 2**failures, capped; `forget` resets the key."""

    def __init__(self, base: float = 0.005, cap: float = 1000.0) -> None:
        self.base = base
        self.cap = cap
        self._failures: dict[str, int] = {}

    def when(self, key: str) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        if failures >= 64:  # 2**64 * base overflows any sane cap; avoid float overflow games
            return self.cap
        return float(min(self.cap, self.base * (2**failures)))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: str) -> int:
        return self._failures.get(key, 0)


class BucketRateLimiter:
    """An overall token bucket (qps, burst) with reservation semantics: each call books the next free slot."""

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock | None = None) -> None:
        if qps <= 0 or burst <= 0:
            raise ValueError("qps and burst must be positive")
        self.qps = qps
        self.burst = burst
        self._clock: Clock = clock or LoopClock()
        self._tokens = float(burst)
        self._last: float | None = None

    def when(self, key: str) -> float:
        now = self._clock.now()
        if self._last is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def forget(self, key: str) -> None:
        """Tokens are not per key: nothing to reset."""

    def num_requeues(self, key: str) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest wait any limiter asks for (per-key backoff combined with an overall bucket)."""

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("need at least one limiter")
        self._limiters = limiters

    def when(self, key: str) -> float:
        return max(limiter.when(key) for limiter in self._limiters)

    def forget(self, key: str) -> None:
        for limiter in self._limiters:
            limiter.forget(key)

    def num_requeues(self, key: str) -> int:
        return max(limiter.num_requeues(key) for limiter in self._limiters)


def default_rate_limiter(
    *, clock: Clock | None = None, bucket_qps: float | None = None, bucket_burst: int = 100
) -> RateLimiter:
    """5 ms → 1000 s per-key backoff, optionally combined with an overall token bucket."""
    per_key = ItemExponentialRateLimiter(0.005, 1000.0)
    if bucket_qps is None:
        return per_key
    return MaxOfRateLimiter(per_key, BucketRateLimiter(bucket_qps, bucket_burst, clock))


class WorkQueue:
    """Deduplicating, exclusive, delaying, rate-limited queue of keys; use from one event loop."""

    def __init__(
        self, name: str = "default", *, rate_limiter: RateLimiter | None = None, clock: Clock | None = None
    ) -> None:
        self.name = name
        self._clock: Clock = clock or LoopClock()
        self._limiter: RateLimiter = rate_limiter or default_rate_limiter(clock=self._clock)
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._added_at: dict[str, float] = {}
        self._last_added: dict[str, float] = {}  # latest add of each dirty key (its "due" time, see due_since)
        self._due: dict[str, float] = {}  # processing key -> latest add before it was handed out
        self._started_at: dict[str, float] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        # delayed adds: heap of (ready_at, seq, key) plus the earliest ready time per key (dedup of waits)
        self._waiting: list[tuple[float, int, str]] = []
        self._waiting_ready: dict[str, float] = {}
        self._seq = itertools.count()
        self._delay_changed = asyncio.Event()
        self._delay_task: asyncio.Task[None] | None = None
        self._shutting_down = False
        self._drained = asyncio.Event()
        self._depth = WORKQUEUE_DEPTH.labels(name=name)
        self._adds = WORKQUEUE_ADDS.labels(name=name)
        self._retries = WORKQUEUE_RETRIES.labels(name=name)
        self._queue_duration = WORKQUEUE_QUEUE_DURATION.labels(name=name)
        self._work_duration = WORKQUEUE_WORK_DURATION.labels(name=name)
        self._depth.set(0)

    # ---- introspection ----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Keys ready to be handed out (not counting delayed or in-flight keys), like client-go's Len."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def processing(self) -> frozenset[str]:
        return frozenset(self._processing)

    def waiting_count(self) -> int:
        """Keys scheduled by `add_after`/`add_rate_limited` and not yet due."""
        return len(self._waiting_ready)

    def num_requeues(self, key: str) -> int:
        return self._limiter.num_requeues(key)

    def is_queued(self, key: str) -> bool:
        """Whether `key` waits to be handed out (queued, or re-added while a worker holds it)."""
        return key in self._dirty

    def due_since(self, key: str) -> float | None:
        """For a key being processed: the clock time of the latest `add` before it was handed out.

        Whatever made it due happened before then, so anything read after that time reflects it (the
        controller uses this to share OpenStack observations among the configs they are fresh enough for).
        """
        return self._due.get(key)

    # ---- adding -----------------------------------------------------------------------------------
    def add(self, key: str) -> None:
        """Queue `key` now; a no-op if it is already waiting to be processed."""
        if self._shutting_down:
            return
        self._last_added[key] = self._clock.now()
        if key in self._dirty:
            return
        self._adds.inc()
        self._dirty.add(key)
        self._added_at[key] = self._clock.now()
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._depth.set(len(self._queue))
        self._wake_one()

    def add_after(self, key: str, delay: float) -> None:
        """Queue `key` after `delay` seconds; an earlier pending schedule for the same key wins."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        ready_at = self._clock.now() + delay
        current = self._waiting_ready.get(key)
        if current is not None and current <= ready_at:
            return
        self._waiting_ready[key] = ready_at
        heapq.heappush(self._waiting, (ready_at, next(self._seq), key))
        self._ensure_delay_task()
        self._delay_changed.set()

    def add_rate_limited(self, key: str) -> None:
        """Retry `key` after its backoff (and the overall bucket, if configured)."""
        if self._shutting_down:
            return
        self._retries.inc()
        self.add_after(key, self._limiter.when(key))

    def forget(self, key: str) -> None:
        """Reset the key's backoff: call after a successful reconcile."""
        self._limiter.forget(key)

    # ---- taking -----------------------------------------------------------------------------------
    async def get(self) -> str:
        """Wait for a key and mark it processing; the caller must call `done(key)`. Raises ShutDown."""
        while True:
            if self._shutting_down:
                raise ShutDown(self.name)
            if self._queue:
                key = self._queue.popleft()
                self._depth.set(len(self._queue))
                self._processing.add(key)
                self._dirty.discard(key)
                now = self._clock.now()
                added = self._added_at.pop(key, None)
                if added is not None:
                    self._queue_duration.observe(max(0.0, now - added))
                self._started_at[key] = now
                self._due[key] = self._last_added.pop(key, now)
                return key
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                if getter in self._getters:
                    self._getters.remove(getter)
                # pass a wake-up we consumed on to another getter
                if getter.done() and not getter.cancelled() and self._queue:
                    self._wake_one()
                raise

    def done(self, key: str) -> None:
        """Mark `key` finished; if it was re-added meanwhile it is queued again now."""
        if key not in self._processing:
            return
        self._processing.discard(key)
        self._due.pop(key, None)
        started = self._started_at.pop(key, None)
        if started is not None:
            self._work_duration.observe(max(0.0, self._clock.now() - started))
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._depth.set(len(self._queue))
            self._wake_one()
        if self._shutting_down and not self._processing:
            self._drained.set()

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    # ---- delayed adds -----------------------------------------------------------------------------
    def _ensure_delay_task(self) -> None:
        if self._delay_task is None or self._delay_task.done():
            self._delay_task = asyncio.get_running_loop().create_task(
                self._delay_loop(), name=f"workqueue-{self.name}-delay"
            )

    def _promote_due(self) -> float | None:
        """Move due keys into the queue; return seconds until the next is due (None: nothing waits)."""
        now = self._clock.now()
        while self._waiting:
            ready_at, _, key = self._waiting[0]
            if self._waiting_ready.get(key) != ready_at:
                heapq.heappop(self._waiting)  # superseded by an earlier schedule
                continue
            if ready_at > now:
                return ready_at - now
            heapq.heappop(self._waiting)
            del self._waiting_ready[key]
            self.add(key)
        return None

    async def _delay_loop(self) -> None:
        """One timer task for all delayed keys: sleeps until the earliest is due or an earlier one arrives."""
        while not self._shutting_down:
            self._delay_changed.clear()
            wait = self._promote_due()
            changed = asyncio.ensure_future(self._delay_changed.wait())
            if wait is None:
                await changed
                continue
            sleeper = asyncio.ensure_future(self._clock.sleep(wait))
            try:
                await asyncio.wait({changed, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
                sleeper.cancel()

    # ---- shutdown ---------------------------------------------------------------------------------
    async def shutdown(self, deadline: float | None = None) -> bool:
        """Stop handing out keys, drop pending ones, wait up to `deadline` s for in-flight keys to be done.

        Returns True when every in-flight key finished in time. Queued and delayed keys are dropped: whoever
        runs next (this process after re-election, or another leader) rebuilds them from a fresh informer
        list.
        """
        if not self._shutting_down:
            self._shutting_down = True
            log.info(
                "Work queue shutting down.",
                queue=self.name,
                in_flight=len(self._processing),
                dropped=len(self._queue) + len(self._waiting_ready),
            )
            self._queue.clear()
            self._dirty.clear()
            self._last_added.clear()
            self._waiting.clear()
            self._waiting_ready.clear()
            self._depth.set(0)
            while self._getters:
                getter = self._getters.popleft()
                if not getter.done():
                    getter.set_result(None)
            if self._delay_task is not None:
                self._delay_task.cancel()
            if not self._processing:
                self._drained.set()
        if deadline is None:
            await self._drained.wait()
            return True
        try:
            await asyncio.wait_for(self._drained.wait(), deadline)
        except TimeoutError:
            log.warning(
                "Work queue shutdown deadline passed with work in flight.",
                queue=self.name,
                in_flight=sorted(self._processing),
            )
            return False
        return True
