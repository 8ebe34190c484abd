"""Owned, supervised asyncio tasks: nothing long-running may die unnoticed.

kopf's "zombie operator" bug class: the watch task died, the process kept serving `/healthz` 200 and did
nothing for days. Every long-running task (informer watchers, the leader elector, event recorder, workers'
parent) is spawned here; a task that ends for any reason other than our own shutdown - exception *or* a silent
return - marks the supervisor failed, so `/healthz` turns red and `wait_failed()` lets the process exit
non-zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class Supervisor:
    """Spawns named tasks, notices one ending unexpectedly, cancels all with a deadline on shutdown."""

    def __init__(self, name: str = "main") -> None:
        self.name = name
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._failed: dict[str, str] = {}
        self._stopping = False
        self._failed_event = asyncio.Event()

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any], *, critical: bool = True) -> asyncio.Task[Any]:
        """Run `coro` as task `name`. A critical task ending early fails the process; others: logged."""
        if name in self._tasks and not self._tasks[name].done():
            coro.close()
            raise ValueError(f"a task named {name!r} is already running")
        if self._stopping:
            coro.close()
            raise RuntimeError("supervisor is shutting down")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(lambda t: self._on_done(name, t, critical))
        return task

    def _on_done(self, name: str, task: asyncio.Task[Any], critical: bool) -> None:
        if self._stopping:
            return
        if task.cancelled():
            reason = "cancelled"
        elif task.exception() is not None:
            reason = f"{type(task.exception()).__name__}: {task.exception()}"
        else:
            reason = "returned"
        if not critical:
            if reason != "returned":
                log.warning("Supervised non-critical task ended.", task=name, reason=reason)
            return
        self._failed[name] = reason
        exc = None if task.cancelled() else task.exception()
        log.error("Supervised task died; the process is no longer healthy.", task=name, reason=reason, exc_info=exc)
        self._failed_event.set()

    def alive(self) -> bool:
        """For `/healthz`: True while no critical task has ended unexpectedly."""
        return not self._failed

    def failed_tasks(self) -> list[str]:
        return sorted(self._failed)

    def failures(self) -> dict[str, str]:
        """Task name → why it ended (for health output and logs)."""
        return dict(self._failed)

    def task_names(self) -> list[str]:
        return sorted(name for name, task in self._tasks.items() if not task.done())

    async def wait_failed(self) -> list[str]:
        """Block until a critical task dies; returns the failed names. Caller: shut down, exit 1."""
        await self._failed_event.wait()
        return self.failed_tasks()

    async def run_until(self, stop: asyncio.Event) -> None:
        """Block until `stop` is set (returns) or a critical task dies (raises `RuntimeError` naming it)."""
        stopper = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(self.wait_failed())
        try:
            done, _ = await asyncio.wait({stopper, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            failed.cancel()
        if failed in done and not failed.cancelled():
            raise RuntimeError(f"supervised task(s) died: {', '.join(failed.result())}")

    async def shutdown(self, deadline: float = 10.0, *, drain: Callable[[], Awaitable[Any]] | None = None) -> bool:
        """Optionally drain, then cancel every task and wait; True if all ended within `deadline` s.

        `drain` (e.g. `lambda: controller.shutdown(8)`) runs first, after tasks ending stopped counting as
        failures, so in-flight reconciles can finish and the leader task may return (releasing its lease) before
        anything is cancelled. Tasks then get a cancellation (not a kill) so they can run their `finally` blocks,
        but a task that ignores cancellation cannot hold the process hostage.
        """
        self._stopping = True
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        if drain is not None:
            try:
                await asyncio.wait_for(drain(), deadline)
            except Exception as exc:  # includes the drain's own timeout: cancel what is left regardless
                log.warning("Drain before shutdown did not complete.", error=repr(exc))
        deadline = max(0.1, end - loop.time())
        running = [task for task in self._tasks.values() if not task.done()]
        for task in running:
            task.cancel()
        if not running:
            return True
        done, pending = await asyncio.wait(running, timeout=deadline)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning(
                    "Supervised task failed during shutdown.",
                    task=task.get_name(),
                    error=repr(task.exception()),
                )
        if pending:
            log.error(
                "Supervised tasks did not stop within the deadline.",
                tasks=sorted(t.get_name() for t in pending),
                deadline=deadline,
            )
            return False
        log.info("Supervised tasks stopped.", supervisor=self.name, count=len(running))
        return True
