"""The runner's reconcile deadline and its stall probe (the liveness backstop behind the deadline)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest

from multinic_ctrl.controller.service import ControllerService
from multinic_ctrl.db import Database
from multinic_ctrl.kube.runner import DONE, Controller, Result
from multinic_ctrl.kube.workqueue import FakeClock
from multinic_ctrl.server import ProbeServer
from multinic_ctrl.settings import Settings


async def _until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def _stop(ctrl: Controller, task: asyncio.Task[None]) -> None:
    await ctrl.shutdown(1)
    await asyncio.wait_for(task, 2)


async def test_a_reconcile_past_its_deadline_is_cancelled_counted_and_retried_with_backoff() -> None:
    loop = asyncio.get_running_loop()
    started: list[float] = []
    cancelled: list[str] = []
    observed: list[tuple[str, str, int]] = []

    async def reconcile(key: str) -> Result:
        started.append(loop.time())
        if len(started) == 1:  # the first attempt hangs (a socket that never answers, say)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(key)
                raise
        return DONE

    ctrl = Controller(
        "t-deadline",
        reconcile,
        workers=1,
        reconcile_timeout=0.2,
        observe=lambda key, outcome, _s: observed.append((key, outcome, ctrl.queue.num_requeues(key))),
    )
    ctrl.queue.add("ns/a")
    task = asyncio.create_task(ctrl.run_workers())
    try:
        await _until(lambda: ctrl.results["success"] == 1)
        assert cancelled == ["ns/a"], "the reconcile itself was cancelled, not merely abandoned"
        assert observed == [("ns/a", "error", 1), ("ns/a", "success", 0)], "an error, retried with backoff"
        assert ctrl.results == {"success": 1, "requeue": 0, "requeue_after": 0, "error": 1}
        assert ctrl.deadlines_exceeded == 1
        assert 0.2 <= started[1] - started[0] < 0.6
        assert not ctrl.queue.processing
    finally:
        await _stop(ctrl, task)


async def test_a_hung_key_neither_stays_processing_nor_blocks_the_others() -> None:
    calls: dict[str, int] = {}

    async def reconcile(key: str) -> None:
        calls[key] = calls.get(key, 0) + 1
        if key == "ns/hangs":
            await asyncio.Event().wait()

    ctrl = Controller("t-deadline-hung", reconcile, workers=1, reconcile_timeout=0.05)
    for key in ("ns/hangs", "ns/b", "ns/c"):
        ctrl.queue.add(key)
    task = asyncio.create_task(ctrl.run_workers())
    try:
        await _until(lambda: calls.get("ns/hangs", 0) >= 3 and calls.get("ns/b") == 1 and calls.get("ns/c") == 1)
        assert ctrl.queue.num_requeues("ns/hangs") >= 2, "each failure lengthens the backoff"
        assert ctrl.deadlines_exceeded >= 2
    finally:
        await _stop(ctrl, task)


async def test_leadership_loss_during_a_reconcile_is_not_a_deadline() -> None:
    started = asyncio.Event()

    async def reconcile(key: str) -> None:
        started.set()
        await asyncio.Event().wait()

    ctrl = Controller("t-deadline-cancel", reconcile, workers=1, reconcile_timeout=5.0)
    ctrl.queue.add("ns/a")
    task = asyncio.create_task(ctrl.run_workers())
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ctrl.results["error"] == 0 and ctrl.deadlines_exceeded == 0
    assert len(ctrl.queue) == 1 and not ctrl.queue.processing, "handed back for the next term"


async def test_a_timeout_raised_by_the_reconcile_itself_is_an_ordinary_error() -> None:
    async def reconcile(key: str) -> None:
        raise TimeoutError("OpenStack did not answer")

    ctrl = Controller("t-deadline-own", reconcile, workers=1, reconcile_timeout=5.0)
    ctrl.queue.add("ns/a")
    task = asyncio.create_task(ctrl.run_workers())
    try:
        await _until(lambda: ctrl.results["error"] >= 1)
        assert ctrl.deadlines_exceeded == 0
    finally:
        await _stop(ctrl, task)


async def test_stalled_when_queued_work_sees_no_progress() -> None:
    clock = FakeClock()
    release = asyncio.Event()

    async def reconcile(key: str) -> None:
        await release.wait()

    ctrl = Controller("t-stall", reconcile, workers=1, reconcile_timeout=None, stall_timeout=300, clock=clock)
    ctrl.queue.add("ns/a")
    ctrl.queue.add("ns/b")
    await clock.advance(1000)
    assert ctrl.stalled() == [], "a standby (workers not running) is never stalled"
    task = asyncio.create_task(ctrl.run_workers())
    try:
        await _until(lambda: ctrl.queue.processing == {"ns/a"})
        await clock.advance(299)
        assert ctrl.stalled() == []
        await clock.advance(2)
        assert ctrl.stalled() == ["t-stall workers: no progress for 301s with 2 key(s) queued"]
        release.set()
        await _until(lambda: ctrl.results["success"] == 2)
        assert ctrl.stalled() == []
        # Idle for an hour is not a stall, and neither is a key taken up just now after that hour.
        release.clear()
        await clock.advance(3600)
        assert ctrl.stalled() == []
        ctrl.queue.add("ns/c")
        await _until(lambda: ctrl.queue.processing == {"ns/c"})
        assert ctrl.stalled() == []
        await clock.advance(301)
        assert ctrl.stalled() == ["t-stall workers: no progress for 301s with 1 key(s) queued"]
        release.set()
        await _until(lambda: not ctrl.queue.processing)
        assert ctrl.stalled() == []
    finally:
        release.set()
        await _stop(ctrl, task)


async def test_stalled_when_a_reconcile_ignores_its_deadline_while_others_progress() -> None:
    clock = FakeClock()
    stop = False

    async def reconcile(key: str) -> None:
        if key == "ns/stubborn":
            while not stop:
                try:
                    await asyncio.sleep(0.01)
                except asyncio.CancelledError:
                    continue  # a bug: swallows the cancellation, so the deadline cannot end it
        return None

    ctrl = Controller("t-stubborn", reconcile, workers=2, reconcile_timeout=0.05, stall_timeout=300, clock=clock)
    ctrl.queue.add("ns/stubborn")
    task = asyncio.create_task(ctrl.run_workers())
    try:
        await _until(lambda: "ns/stubborn" in ctrl.queue.processing)
        await asyncio.sleep(0.2)  # well past the (real-time) deadline: still running
        assert "ns/stubborn" in ctrl.queue.processing
        await clock.advance(200)
        ctrl.queue.add("ns/fine")
        await _until(lambda: ctrl.results["success"] == 1)  # the other worker makes progress
        assert ctrl.stalled() == []
        await clock.advance(101)
        assert ctrl.stalled() == ["t-stubborn workers: 1 reconcile(s) running past their deadline"]
    finally:
        stop = True
        await _stop(ctrl, task)


async def test_healthz_reports_a_stalled_controller() -> None:
    """The one line in ControllerService.install: /healthz fails on a stall, and tolerates no controller yet."""
    settings = Settings()
    service = ControllerService(settings, Database(settings.database))
    server = ProbeServer("127.0.0.1", 0)
    service.install(server)
    await server.start()
    clock = FakeClock()
    release = asyncio.Event()

    async def reconcile(key: str) -> None:
        await release.wait()

    ctrl = Controller("openstackconfig", reconcile, workers=1, reconcile_timeout=None, stall_timeout=300, clock=clock)
    task: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{server.bound_port}/healthz"
            async with session.get(url) as resp:
                assert resp.status == 200, "controller not created yet (run() creates it)"
            service.controller = ctrl
            ctrl.queue.add("ns/a")
            task = asyncio.create_task(ctrl.run_workers())
            await _until(lambda: bool(ctrl.queue.processing))
            async with session.get(url) as resp:
                assert resp.status == 200
            await clock.advance(301)
            async with session.get(url) as resp:
                assert resp.status == 503
                assert await resp.json() == {
                    "status": "failed",
                    "dead": ["openstackconfig workers: no progress for 301s with 1 key(s) queued"],
                }
    finally:
        release.set()
        if task is not None:
            await _stop(ctrl, task)
        await server.stop()
