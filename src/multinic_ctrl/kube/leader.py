"""Leader election on a `coordination.k8s.io/v1` Lease, following client-go's algorithm.

* Candidates poll every `retry_period` (with jitter). A lease is taken when it has no holder or when the
  holder's record has not changed for `lease_duration` *as observed by our own clock* - we never compare our
  clock with the timestamps another node wrote, so clock skew between nodes cannot make two leaders.
* Writes use the Lease's resourceVersion (optimistic concurrency): of two candidates racing for an expired
  lease exactly one update succeeds, the other gets 409 Conflict.
* The leader renews every `retry_period`; if no renewal succeeds within `renew_deadline` (< lease_duration),
  the leading work is cancelled *at once* - before any other candidate may consider the lease expired - so two
  processes never reconcile at the same time.
* On graceful shutdown the leader releases the lease (empty holder, 1 s duration) so a successor takes over on
  its next poll instead of waiting out the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import structlog

from .client import LEASES, ApiError, JsonObj, KubeClient

log = structlog.get_logger(__name__)

LeadingFn = Callable[[], Coroutine[Any, Any, None]]


def default_identity() -> str:
    """POD_NAME in a pod (readable in `kubectl get lease`), else hostname plus a random suffix."""
    pod = os.environ.get("POD_NAME")
    if pod:
        return pod
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:12]}"


def _micro_time(moment: datetime) -> str:
    """Kubernetes MicroTime format (RFC 3339 with microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaigns for a Lease and runs `leading()` only while holding it."""

    def __init__(
        self,
        client: KubeClient,
        *,
        name: str,
        namespace: str,
        identity: str | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        release_on_cancel: bool = True,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self._is_leader = False
        self._observed_spec: JsonObj | None = None
        self._observed_rv: str | None = None
        self._observed_at = 0.0
        self.transitions = 0  # times this elector became leader
        self._renewed_at: float | None = None  # loop time at which the last successful write was *sent*
        self._log = log.bind(lease=f"{namespace}/{name}", identity=self.identity)

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    def lease_remaining(self) -> float:
        """Seconds until another candidate may consider our lease expired (0 when not leading).

        Counted from when our last successful write was *sent*, on our clock: others wait a full lease duration
        from when they *observed* that write, which is later - so this errs on the safe side. Writers use it as
        a safety margin before each transaction (a paused process learns here that it may have been deposed).
        """
        if not self._is_leader or self._renewed_at is None:
            return 0.0
        return max(0.0, self._renewed_at + self.lease_duration - asyncio.get_running_loop().time())

    async def run(self, leading: LeadingFn, *, on_stopped_leading: Callable[[], None] | None = None) -> None:
        """Campaign forever: acquire → run `leading()` while renewing → on loss cancel it and campaign again.

        Cancel this coroutine to stop; if currently leader (and `release_on_cancel`), the lease is released.
        If `leading()` itself returns or raises, the lease is released and the exception (if any) propagates:
        losing the work while keeping the lease would block every other replica.
        """
        loop = asyncio.get_running_loop()
        while True:
            await self._acquire()
            self._is_leader = True
            self.transitions += 1
            self._log.info("Became leader.")
            work = asyncio.create_task(leading(), name=f"leader-{self.name}-work")
            renewer = asyncio.create_task(self._renew_loop(loop.time()), name=f"leader-{self.name}-renew")
            try:
                done, _ = await asyncio.wait({work, renewer}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                await self._stop_leading(work, renewer, on_stopped_leading)
                if self.release_on_cancel:
                    await self._release()
                raise
            if work in done:
                await self._stop_leading(work, renewer, on_stopped_leading)
                await self._release()
                work.result()  # re-raise the work's failure
                self._log.info("Leading work finished; lease released.")
                return
            # renewer ended: leadership lost
            await self._stop_leading(work, renewer, on_stopped_leading)
            self._log.warning("Leadership lost; workers stopped.")

    async def _stop_leading(
        self,
        work: asyncio.Task[None],
        renewer: asyncio.Task[None],
        on_stopped_leading: Callable[[], None] | None,
    ) -> None:
        was_leader = self._is_leader
        self._is_leader = False
        for task in (work, renewer):
            task.cancel()
        for task in (work, renewer):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if was_leader and on_stopped_leading is not None:
            on_stopped_leading()

    # ---- campaign ---------------------------------------------------------------------------------
    async def _acquire(self) -> None:
        while True:
            try:
                if await self._try_acquire_or_renew():
                    return
            except (ApiError, OSError, TimeoutError) as exc:
                self._log.warning("Lease acquire attempt failed.", error=str(exc))
            except Exception as exc:  # aiohttp errors and the like: keep campaigning
                self._log.warning("Lease acquire attempt failed.", error=repr(exc))
            await asyncio.sleep(self.retry_period * random.uniform(1.0, 1.2))

    async def _renew_loop(self, acquired_at: float) -> None:
        """Returns when leadership is lost: renew deadline missed or someone else holds the lease."""
        loop = asyncio.get_running_loop()
        last_renew = acquired_at
        while True:
            await asyncio.sleep(self.retry_period)
            remaining = last_renew + self.renew_deadline - loop.time()
            while remaining > 0:
                try:
                    async with asyncio.timeout(remaining):
                        ok = await self._try_acquire_or_renew()
                except TimeoutError:
                    ok = False
                except Exception as exc:
                    self._log.warning("Lease renewal attempt failed.", error=repr(exc))
                    ok = False
                if ok:
                    last_renew = loop.time()
                    break
                if self._held_by_other():
                    self._log.warning("Lease taken by another holder.", holder=self._holder())
                    return
                remaining = last_renew + self.renew_deadline - loop.time()
                if remaining > 0:
                    await asyncio.sleep(min(self.retry_period / 4, remaining))
                    remaining = last_renew + self.renew_deadline - loop.time()
            else:
                self._log.error(
                    "Failed to renew the lease within the renew deadline.", renew_deadline=self.renew_deadline
                )
                return

    def _holder(self) -> str:
        return str((self._observed_spec or {}).get("holderIdentity") or "")

    def _held_by_other(self) -> bool:
        holder = self._holder()
        return bool(holder) and holder != self.identity

    def _observe(self, lease: JsonObj) -> None:
        """Remember the record and *when we saw it change* (expiry is judged on our clock only)."""
        spec = lease.get("spec") or {}
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = asyncio.get_running_loop().time()
        self._observed_rv = (lease.get("metadata") or {}).get("resourceVersion")

    async def _try_acquire_or_renew(self) -> bool:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        now = datetime.now(UTC)
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except ApiError as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, acquire_time=_micro_time(now), transitions=0),
            }
            try:
                created = await self.client.create(LEASES, body, self.namespace)
            except ApiError as create_exc:
                if create_exc.status == 409:
                    return False
                raise
            self._observe(created)
            self._renewed_at = sent
            return True

        self._observe(lease)
        spec = self._observed_spec or {}
        holder = str(spec.get("holderIdentity") or "")
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and loop.time() < self._observed_at + duration:
            return False  # someone else holds a live lease

        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquire_time = spec.get("acquireTime") or _micro_time(now)
        else:
            acquire_time = _micro_time(now)
            transitions += 1 if holder else 0
        new = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {**lease.get("metadata", {}), "resourceVersion": self._observed_rv},
            "spec": self._spec(now, acquire_time=acquire_time, transitions=transitions),
        }
        try:
            updated = await self.client.replace(LEASES, self.name, new, self.namespace)
        except ApiError as exc:
            if exc.status == 409:
                return False  # lost a race; the next GET tells us who won
            raise
        self._observe(updated)
        self._renewed_at = sent
        return True

    def _spec(self, now: datetime, *, acquire_time: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire_time,
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }

    async def _release(self) -> None:
        """Give the lease up so a successor need not wait for it to expire (best effort, bounded time)."""
        try:
            async with asyncio.timeout(max(self.retry_period, 2.0)):
                lease = await self.client.get(LEASES, self.name, self.namespace)
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity:
                    return
                now = _micro_time(datetime.now(UTC))
                lease["spec"] = {
                    **spec,
                    "holderIdentity": None,
                    "leaseDurationSeconds": 1,
                    "renewTime": now,
                    "acquireTime": now,
                }
                await self.client.replace(LEASES, self.name, lease, self.namespace)
            self._log.info("Lease released.")
        except Exception as exc:
            self._log.warning("Could not release the lease; successors wait for it to expire.", error=repr(exc))
