"""Controller runner outcome mapping and the task supervisor."""

from __future__ import annotations

import asyncio

import pytest

from multinic_ctrl.kube.runner import DONE, Controller, Result, generation_changed, owner_keys
from multinic_ctrl.kube.supervisor import Supervisor


async def _until(predicate, timeout: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def test_reconcile_outcomes_map_onto_the_queue() -> None:
    calls: dict[str, int] = {}
    observed: list[tuple[str, str]] = []

    async def reconcile(key: str) -> Result | None:
        calls[key] = calls.get(key, 0) + 1
        n = calls[key]
        if key == "fails-twice" and n <= 2:
            raise RuntimeError("boom")
        if key == "requeue-once" and n == 1:
            return Result(requeue=True)
        if key == "periodic" and n < 3:
            return Result(requeue_after=0.02)
        return DONE if key != "none" else None

    ctrl = Controller("t-runner", reconcile, workers=3, observe=lambda k, r, s: observed.append((k, r)))
    for key in ["fails-twice", "requeue-once", "periodic", "none"]:
        ctrl.queue.add(key)
    task = asyncio.create_task(ctrl.run_workers())
    await _until(
        lambda: (
            calls.get("fails-twice") == 3
            and calls.get("periodic") == 3
            and calls.get("requeue-once") == 2
            and calls.get("none") == 1
        )
    )
    await asyncio.sleep(0.05)
    assert calls == {"fails-twice": 3, "requeue-once": 2, "periodic": 3, "none": 1}
    assert ctrl.queue.num_requeues("fails-twice") == 0, "success forgets the backoff"
    assert ctrl.results == {"success": 4, "requeue": 1, "requeue_after": 2, "error": 2}
    assert ("fails-twice", "error") in observed
    assert await ctrl.shutdown(1)
    await asyncio.wait_for(task, 1)


async def test_cancelling_workers_requeues_the_interrupted_key() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def reconcile(key: str) -> None:
        started.set()
        await release.wait()

    ctrl = Controller("t-runner-cancel", reconcile, workers=1)
    ctrl.queue.add("k")
    task = asyncio.create_task(ctrl.run_workers())
    await asyncio.wait_for(started.wait(), 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(ctrl.queue) == 1 and not ctrl.queue.processing
    release.set()
    started.clear()
    task = asyncio.create_task(ctrl.run_workers())
    await asyncio.wait_for(started.wait(), 1)
    await ctrl.shutdown(1)
    await asyncio.wait_for(task, 1)


def test_mappers_and_predicates() -> None:
    owned = {
        "metadata": {
            "namespace": "ns",
            "ownerReferences": [
                {"apiVersion": "x.io/v1", "kind": "Owner", "name": "o1"},
                {"kind": "Other", "name": "z"},
            ],
        }
    }
    assert list(owner_keys("Owner")(owned)) == ["ns/o1"]
    assert list(owner_keys("Owner", "y.io/")(owned)) == []
    assert generation_changed(None, {"metadata": {"generation": 1}})
    assert not generation_changed({"metadata": {"generation": 1}}, {"metadata": {"generation": 1}})
    assert generation_changed({"metadata": {"generation": 1}}, {"metadata": {"generation": 2}})


async def test_supervisor_notices_dead_and_returned_tasks() -> None:
    sup = Supervisor()

    async def forever() -> None:
        await asyncio.Event().wait()

    async def crash() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("watcher died")

    async def quietly_returns() -> None:
        await asyncio.sleep(0.02)

    sup.spawn("ok", forever())
    sup.spawn("non-critical", quietly_returns(), critical=False)
    assert sup.alive()
    sup.spawn("watcher", crash())
    assert await asyncio.wait_for(sup.wait_failed(), 1) == ["watcher"]
    assert not sup.alive()
    assert "RuntimeError" in sup.failures()["watcher"]
    sup.spawn("returns", quietly_returns())
    await asyncio.sleep(0.05)
    assert sup.failed_tasks() == ["returns", "watcher"]
    with pytest.raises(ValueError):
        sup.spawn("ok", forever())
    assert await sup.shutdown(1)
    assert sup.failed_tasks() == ["returns", "watcher"], "shutdown cancellations are not failures"


async def test_supervisor_shutdown_deadline() -> None:
    sup = Supervisor()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(10)  # ignores the first cancellation

    task = sup.spawn("stubborn", stubborn())
    await asyncio.sleep(0)
    assert await sup.shutdown(0.05) is False
    assert sup.alive()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_expected_errors_are_warnings_without_a_traceback() -> None:
    from structlog.testing import capture_logs

    class Outage(ConnectionError):
        pass

    async def reconcile(key: str) -> Result | None:
        raise Outage("database down") if key == "outage" else ValueError("a bug")

    ctrl = Controller("t-expected", reconcile, workers=1, expected_errors=(ConnectionError,))
    with capture_logs() as logs:
        ctrl.queue.add("outage")
        ctrl.queue.add("bug")
        task = asyncio.create_task(ctrl.run_workers())
        await _until(lambda: ctrl.results["error"] >= 2)
        await ctrl.shutdown(1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    failed = {e["key"]: e for e in logs if e["event"] == "Reconcile failed; will retry."}
    assert failed["outage"]["log_level"] == "warning" and "exc_info" not in failed["outage"]
    assert failed["bug"]["log_level"] == "error" and isinstance(failed["bug"]["exc_info"], ValueError)


async def test_run_until_returns_on_stop_and_raises_when_a_task_dies() -> None:
    sup = Supervisor("t-until")
    stop = asyncio.Event()
    sup.spawn("sleeper", asyncio.sleep(3600))
    waiter = asyncio.create_task(sup.run_until(stop))
    await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(waiter, 1)

    async def dies() -> None:
        raise ValueError("boom")

    sup.spawn("dies", dies())
    with pytest.raises(RuntimeError, match="dies"):
        await asyncio.wait_for(sup.run_until(asyncio.Event()), 1)
    await sup.shutdown(1)
