"""Leader election on a real Lease: one leader at a time, hand-over on crash and on graceful stop,
and a leader that cannot renew stops its work before anyone else may take over.

Durations are scaled down (lease 4 s, renew deadline 3 s, retry 0.5 s) so the suite stays quick; the algorithm
only depends on their ratios, which keep the production ordering lease > renew deadline > retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest

from multinic_ctrl.kube.client import CONFIGMAPS, CORE_EVENTS, LEASES, KubeClient
from multinic_ctrl.kube.events import EventRecorder
from multinic_ctrl.kube.informer import Informer
from multinic_ctrl.kube.leader import LeaderElector
from multinic_ctrl.kube.patch import merge_patch
from multinic_ctrl.kube.runner import DONE, Controller, Result
from multinic_ctrl.kube.supervisor import Supervisor

pytestmark = pytest.mark.integration

LEASE, RENEW, RETRY = 4.0, 3.0, 0.5


class Work:
    """The leading work of one replica: records when it runs and checks no two replicas overlap."""

    active: set[str]

    def __init__(self, name: str, shared: set[str], overlaps: list[set[str]]) -> None:
        self.name = name
        self.shared = shared
        self.overlaps = overlaps
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.started_at: float | None = None
        self.stopped_at: float | None = None

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        self.stopped.clear()
        self.shared.add(self.name)
        if len(self.shared) > 1:
            self.overlaps.append(set(self.shared))
        self.started_at = loop.time()
        self.started.set()
        try:
            while True:
                if len(self.shared) > 1:
                    self.overlaps.append(set(self.shared))
                await asyncio.sleep(0.05)
        finally:
            self.shared.discard(self.name)
            self.stopped_at = loop.time()
            self.started.clear()
            self.stopped.set()


def elector(
    client: KubeClient,
    lease: str,
    namespace: str,
    identity: str,
    timings: tuple[float, float, float] = (LEASE, RENEW, RETRY),
    **kw: Any,
) -> LeaderElector:
    lease_duration, renew_deadline, retry_period = timings
    return LeaderElector(
        client,
        name=lease,
        namespace=namespace,
        identity=identity,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        **kw,
    )


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _first_started(a: Work, b: Work, timeout: float) -> Work:
    done, pending = await asyncio.wait(
        [asyncio.create_task(a.started.wait()), asyncio.create_task(b.started.wait())],
        timeout=timeout,
        return_when=asyncio.FIRST_COMPLETED,
    )
    for task in pending:
        task.cancel()
    assert done, "nobody became leader"
    return a if a.started.is_set() else b


@pytest.mark.parametrize("timings", [(LEASE, RENEW, RETRY), (15.0, 10.0, 2.0)], ids=["scaled", "production-15s-10s-2s"])
async def test_exactly_one_leader_and_hand_over_on_crash(
    kube_api: Any, namespace: str, timings: tuple[float, float, float]
) -> None:
    lease_duration, _, retry = timings
    client = KubeClient(kube_api)
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    shared: set[str] = set()
    overlaps: list[set[str]] = []
    work = {n: Work(n, shared, overlaps) for n in ("a", "b")}
    # "crash": no release on cancel, like a SIGKILLed pod
    electors = {n: elector(client, lease, namespace, n, timings, release_on_cancel=False) for n in work}
    tasks = {n: asyncio.create_task(electors[n].run(work[n])) for n in work}
    try:
        leader = await _first_started(work["a"], work["b"], 10)
        other = "b" if leader.name == "a" else "a"
        await asyncio.sleep(2 * retry + 4.0)  # several renewals: the follower must stay a follower
        assert shared == {leader.name} and not overlaps
        assert electors[leader.name].is_leader and not electors[other].is_leader
        stored = await client.get(LEASES, lease, namespace)
        assert stored["spec"]["holderIdentity"] == leader.name

        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        await _stop(tasks[leader.name])
        await asyncio.wait_for(work[other].started.wait(), lease_duration + 4 * retry)
        took = loop.time() - killed_at
        assert lease_duration - 2 * retry <= took <= lease_duration + 3 * retry, f"hand-over took {took:.2f}s"
        assert not overlaps
        stored = await client.get(LEASES, lease, namespace)
        assert stored["spec"]["holderIdentity"] == other
        assert stored["spec"]["leaseTransitions"] >= 1
    finally:
        for task in tasks.values():
            await _stop(task)


async def test_graceful_stop_releases_and_hands_over_at_once(kube_api: Any, namespace: str) -> None:
    client = KubeClient(kube_api)
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    shared: set[str] = set()
    overlaps: list[set[str]] = []
    work = {n: Work(n, shared, overlaps) for n in ("a", "b")}
    electors = {n: elector(client, lease, namespace, n) for n in work}
    tasks = {n: asyncio.create_task(electors[n].run(work[n])) for n in work}
    try:
        leader = await _first_started(work["a"], work["b"], 10)
        other = "b" if leader.name == "a" else "a"
        await asyncio.sleep(2 * RETRY)
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        await _stop(tasks[leader.name])
        assert work[leader.name].stopped.is_set()
        stored = await client.get(LEASES, lease, namespace)
        assert not stored["spec"].get("holderIdentity"), "graceful stop must release the lease"
        await asyncio.wait_for(work[other].started.wait(), LEASE)
        took = loop.time() - stopped_at
        assert took < 2 * RETRY + 0.5, f"hand-over after release took {took:.2f}s (lease is {LEASE}s)"
        assert not overlaps
    finally:
        for task in tasks.values():
            await _stop(task)


async def test_leader_that_cannot_renew_stops_work_within_renew_deadline(
    kube_api: Any, namespace: str, control_plane: Any
) -> None:
    client = KubeClient(kube_api)
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    shared: set[str] = set()
    overlaps: list[set[str]] = []
    work = Work("a", shared, overlaps)
    lost: list[float] = []
    loop = asyncio.get_running_loop()
    a = elector(client, lease, namespace, "a")
    task = asyncio.create_task(a.run(work, on_stopped_leading=lambda: lost.append(loop.time())))
    try:
        await asyncio.wait_for(work.started.wait(), 10)
        await asyncio.sleep(RETRY)
        down_at = loop.time()
        await asyncio.to_thread(control_plane.stop_apiserver)
        try:
            await asyncio.wait_for(work.stopped.wait(), RENEW + 2 * RETRY + 1)
            assert work.stopped_at is not None
            # last successful renewal was at most one retry period before the outage
            assert work.stopped_at - down_at <= RENEW + RETRY, "work must stop before the lease can expire"
            assert lost and not a.is_leader
        finally:
            await asyncio.to_thread(control_plane.start_apiserver)
        # it campaigns again and, being the only candidate, wins back the lease
        await asyncio.wait_for(work.started.wait(), LEASE + 10)
        assert a.transitions == 2
    finally:
        await _stop(task)


async def test_full_wiring_with_graceful_shutdown(kube_api: Any, namespace: str) -> None:
    """The composition every controller uses: supervisor + informer + controller + leader + event recorder."""
    client = KubeClient(kube_api)
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    informer = Informer(client, CONFIGMAPS, namespace=namespace)
    recorder = EventRecorder(client, "multinic-test", update_interval=0.2)
    in_flight = asyncio.Event()
    finished: list[str] = []

    async def reconcile(key: str) -> Result | None:
        obj = informer.store.get(key)
        if obj is None:
            return DONE
        name = obj["metadata"]["name"]
        if name == "slow":
            in_flight.set()
            await asyncio.sleep(0.5)  # graceful shutdown must let this finish
            finished.append(key)
            return DONE
        if obj["metadata"].get("annotations", {}).get("seen") != "yes":
            await merge_patch(
                client, CONFIGMAPS, name, {"metadata": {"annotations": {"seen": "yes"}}}, namespace=namespace
            )
            recorder.normal(obj, "Seen", "reconciled")
        return DONE

    controller = Controller("t-wiring", reconcile, workers=2)
    controller.watch(informer)
    elector = LeaderElector(
        client,
        name=lease,
        namespace=namespace,
        identity="solo",
        lease_duration=LEASE,
        renew_deadline=RENEW,
        retry_period=RETRY,
    )
    sup = Supervisor("t-wiring")
    sup.spawn("informer", informer.run())
    sup.spawn("events", recorder.run())
    sup.spawn("leader", elector.run(controller.run_workers))
    await client.create(CONFIGMAPS, {"metadata": {"name": "a"}, "data": {}}, namespace)

    async def annotated() -> bool:
        obj = await client.get(CONFIGMAPS, "a", namespace)
        return obj["metadata"].get("annotations", {}).get("seen") == "yes"

    loop = asyncio.get_running_loop()
    end = loop.time() + 20
    while not await annotated():
        assert loop.time() < end, "reconcile never ran"
        await asyncio.sleep(0.1)
    assert sup.alive() and elector.is_leader
    await client.create(CONFIGMAPS, {"metadata": {"name": "slow"}, "data": {}}, namespace)
    await asyncio.wait_for(in_flight.wait(), 10)
    assert await sup.shutdown(10, drain=lambda: controller.shutdown(5))
    assert finished == [f"{namespace}/slow"], "in-flight reconcile finished during graceful shutdown"
    assert sup.alive(), "a graceful shutdown is not a failure"
    stored = await client.get(LEASES, lease, namespace)
    assert not stored["spec"].get("holderIdentity"), "lease released on graceful shutdown"
    events = await client.list(CORE_EVENTS, namespace, field_selector="involvedObject.name=a")
    assert [e["reason"] for e in events["items"]] == ["Seen"]
