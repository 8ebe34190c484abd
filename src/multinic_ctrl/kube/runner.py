"""The controller runner: informer events → keys → work queue → N workers → reconcile(key) → queue.

The reconcile function's outcome is mapped onto the queue in exactly one place (`_process`), so every
controller gets the same semantics:

* returns `None` / `Result()`           → done: `forget` (reset backoff);
* returns `Result(requeue_after=s)`     → done, `forget`, and reconcile again in `s` seconds (periodic
  resync);
* returns `Result(requeue=True)`        → retry with per-key backoff (not an error, e.g. "waiting for X");
* raises                                → error: logged, retry with per-key backoff;
* runs longer than `reconcile_timeout`  → cancelled, and then an error like any other: logged, counted, retried
  with per-key backoff. A key is never "processing" for longer than its deadline (plus however long the
  reconcile takes to unwind from the cancellation).

Workers run only while `run_workers()` runs - the leader elector starts and cancels it. Cancelling stops every
worker at once; a key whose reconcile was interrupted is put back so the next leadership term processes it.

`stalled()` is a liveness probe, the backstop for the deadline: while workers run, it names the controller when
work is queued (or in flight) and no worker has made progress - finished a reconcile or taken a key - for
`stall_timeout`, or when a reconcile has outlived its deadline by `stall_timeout` (it ignored the cancellation).
A restart is then the only cure. Delayed keys (backoff, `add_after`) are not queued work until they are due; a
standby replica, whose workers do not run, is never stalled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from .client import JsonObj, object_key
from .informer import Informer
from .workqueue import Clock, LoopClock, ShutDown, WorkQueue

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Result:
    """What a reconcile asks for next. The default instance means "done"."""

    requeue_after: float | None = None
    requeue: bool = False


DONE = Result()

DEFAULT_RECONCILE_TIMEOUT = 150.0
DEFAULT_STALL_TIMEOUT = 300.0

ReconcileFn = Callable[[str], Awaitable[Result | None]]
KeyMapper = Callable[[JsonObj], Iterable[str]]
Predicate = Callable[[JsonObj | None, JsonObj], bool]
ResultObserver = Callable[[str, str, float], None]
"""Called after each reconcile with (key, result word: success|requeue|requeue_after|error, seconds)."""


def _own_key(obj: JsonObj) -> Iterable[str]:
    return (object_key(obj),)


def generation_changed(old: JsonObj | None, new: JsonObj) -> bool:
    """Predicate: only spec changes (metadata.generation) - skips status-only and resync updates."""
    if old is None:
        return True
    return (old.get("metadata") or {}).get("generation") != (new.get("metadata") or {}).get("generation")


class Controller:
    """Wires informers to a work queue and runs a bounded pool of workers calling `reconcile(key)`."""

    def __init__(
        self,
        name: str,
        reconcile: ReconcileFn,
        *,
        workers: int = 2,
        queue: WorkQueue | None = None,
        observe: ResultObserver | None = None,
        reconcile_timeout: float | None = DEFAULT_RECONCILE_TIMEOUT,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
        clock: Clock | None = None,
        expected_errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        """`reconcile_timeout` None: no deadline; `stall_timeout` None: never stalled. `clock` times progress
        (the deadline itself runs on the event loop's clock). `expected_errors` (a database or an API that is
        down) are logged as a warning without a traceback: rendering one per failed attempt during an outage
        floods the log and blocks the event loop; anything else keeps its traceback."""
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.queue = queue or WorkQueue(name)
        self.reconcile_timeout = reconcile_timeout
        self.stall_timeout = stall_timeout
        self._observe = observe
        self._expected_errors = expected_errors
        self._informers: list[Informer] = []
        self.results: dict[str, int] = {"success": 0, "requeue": 0, "requeue_after": 0, "error": 0}
        self.deadlines_exceeded = 0
        self._log = log.bind(controller=name)
        self._clock: Clock = clock or LoopClock()
        self._running = False
        self._last_progress = 0.0
        self._in_flight: dict[str, float] = {}  # key → when its reconcile started
        self._stall_reported = False

    def watch(self, informer: Informer, mapper: KeyMapper | None = None, *, predicate: Predicate | None = None) -> None:
        """Enqueue keys for the informer's events.

        `mapper` and `predicate` see the informer's cached objects uncopied and must not mutate them.
        `mapper` turns an object into the keys to reconcile (default: its own key; e.g. an owner's key for
        owned objects). `predicate(old, new)` filters adds/updates (old is None for adds); deletes always
        enqueue, since a missed delete would leave cleanup undone.
        """
        to_keys = mapper or _own_key
        queue = self.queue

        def on_add(obj: JsonObj) -> None:
            if predicate is None or predicate(None, obj):
                for key in to_keys(obj):
                    queue.add(key)

        def on_update(old: JsonObj, new: JsonObj) -> None:
            if predicate is None or predicate(old, new):
                for key in to_keys(new):
                    queue.add(key)

        def on_delete(obj: JsonObj) -> None:
            for key in to_keys(obj):
                queue.add(key)

        # mappers and predicates only read: skip the per-event deep copy (see Informer.add_handler)
        informer.add_handler(on_add, on_update, on_delete, read_only=True)
        self._informers.append(informer)

    @property
    def has_synced(self) -> bool:
        return all(informer.has_synced for informer in self._informers)

    async def wait_synced(self, max_wait: float | None = None) -> bool:
        results = await asyncio.gather(*(i.wait_synced(max_wait) for i in self._informers))
        return all(results)

    async def run_workers(self) -> None:
        """Run `workers` workers until cancelled (leadership lost/shutdown) or the queue shuts down.

        Waits for the informers' first sync so a reconcile never acts on a partially filled cache (e.g.
        deleting "orphans" that simply have not been listed yet).
        """
        await self.wait_synced()
        self._log.info("Controller workers starting.", workers=self.workers)
        self._progress()
        self._running = True
        tasks = [asyncio.create_task(self._worker(i), name=f"{self.name}-worker-{i}") for i in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            self._running = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._log.info("Controller workers stopped.")

    async def shutdown(self, deadline: float = 10.0) -> bool:
        """Graceful: stop handing out keys and let in-flight reconciles finish within `deadline` seconds."""
        return await self.queue.shutdown(deadline)

    # ---- liveness ---------------------------------------------------------------------------------------------
    def _progress(self) -> None:
        self._last_progress = self._clock.now()

    def stalled(self) -> list[str]:
        """Liveness probe (see the module doc): what is stalled, in words fit for `/healthz`; empty when alive."""
        if not self._running or self.stall_timeout is None:
            return []
        now = self._clock.now()
        pending = len(self.queue) + len(self._in_flight)
        idle_for = now - self._last_progress
        problems: list[str] = []
        if pending and idle_for > self.stall_timeout:
            problems.append(f"{self.name} workers: no progress for {idle_for:.0f}s with {pending} key(s) queued")
        overdue: list[str] = []
        if self.reconcile_timeout is not None:  # without a deadline, "no progress" above is all there is to say
            overdue_after = self.reconcile_timeout + self.stall_timeout
            overdue = sorted(key for key, started in self._in_flight.items() if now - started > overdue_after)
        if overdue:
            problems.append(f"{self.name} workers: {len(overdue)} reconcile(s) running past their deadline")
        if problems and not self._stall_reported:
            self._log.error(
                "Controller stalled; liveness fails.",
                idle_seconds=round(idle_for, 1),
                queued=len(self.queue),
                in_flight=sorted(self._in_flight),
                overdue=overdue,
            )
        self._stall_reported = bool(problems)
        return problems

    async def _worker(self, index: int) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            self._progress()
            self._in_flight[key] = self._clock.now()
            try:
                await self._process(key)
            except asyncio.CancelledError:
                # interrupted by leadership loss or shutdown: hand the key back for whoever runs next
                self.queue.done(key)
                self.queue.add(key)
                raise
            finally:
                self._in_flight.pop(key, None)
            self._progress()
            self.queue.done(key)

    async def _process(self, key: str) -> None:
        """The one place where a reconcile outcome becomes queue bookkeeping."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        outcome: str
        deadline = asyncio.timeout(self.reconcile_timeout)
        try:
            async with deadline:
                result = await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = "error"
            self.queue.add_rate_limited(key)
            if isinstance(exc, TimeoutError) and deadline.expired():
                self.deadlines_exceeded += 1
                self._log.error(
                    "Reconcile exceeded its deadline; cancelled, will retry.",
                    key=key,
                    deadline_seconds=self.reconcile_timeout,
                    retries=self.queue.num_requeues(key),
                )
            elif isinstance(exc, self._expected_errors):
                self._log.warning(
                    "Reconcile failed; will retry.",
                    key=key,
                    error=str(exc) or type(exc).__name__,
                    error_type=type(exc).__name__,
                    retries=self.queue.num_requeues(key),
                )
            else:
                self._log.error(
                    "Reconcile failed; will retry.",
                    key=key,
                    error=str(exc) or type(exc).__name__,
                    error_type=type(exc).__name__,
                    retries=self.queue.num_requeues(key),
                    exc_info=exc,
                )
        else:
            result = result or DONE
            if result.requeue:
                outcome = "requeue"
                self.queue.add_rate_limited(key)
            elif result.requeue_after is not None:
                outcome = "requeue_after"
                self.queue.forget(key)
                self.queue.add_after(key, result.requeue_after)
            else:
                outcome = "success"
                self.queue.forget(key)
        elapsed = loop.time() - start
        self.results[outcome] += 1
        self._log.debug("Reconciled.", key=key, result=outcome, seconds=round(elapsed, 4))
        if self._observe is not None:
            try:
                self._observe(key, outcome, elapsed)
            except Exception:
                self._log.exception("Reconcile result observer failed.")


def enqueue_all(queue: WorkQueue, keys: Iterable[str]) -> None:
    """Add many keys (e.g. a webhook-triggered full resync)."""
    for key in keys:
        queue.add(key)


def owner_keys(kind: str, api_version_prefix: str = "") -> KeyMapper:
    """Mapper for owned objects: the keys of their owners of `kind` (controller-runtime's Owns())."""

    def mapper(obj: JsonObj) -> list[str]:
        meta: dict[str, Any] = obj.get("metadata") or {}
        namespace = meta.get("namespace")
        keys = []
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") != kind:
                continue
            if api_version_prefix and not str(ref.get("apiVersion", "")).startswith(api_version_prefix):
                continue
            keys.append(f"{namespace}/{ref['name']}" if namespace else str(ref["name"]))
        return keys

    return mapper
