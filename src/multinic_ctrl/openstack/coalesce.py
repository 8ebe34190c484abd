"""`ObservationCoalescer`: configs of one OpenStack identity that need OpenStack at about the same time share
one observation (see `observe.py` for what a batch asks and how a config takes its slice).

Merging only the reconciles that run at the same moment is not enough: with W workers at most W of them wait
at once, so a burst of N configs of one project would still cost N/W observations. The coalescer therefore
also serves configs that are merely *queued*: when a batch starts it asks the controller (`PeerSource`) for the
other configs of the same identity that are due now and observes them too; their reconciles, when a worker
gets to them, find a finished result that covers them and make no call.

Invariants:

* **identity** - only requests with equal `Credentials.cache_key()` (endpoint, user, domain, project, endpoint
  overrides, region, interface and, through an HMAC, the password) share a batch or a result: a config never
  sees what other credentials can see.
* **exact slices** - a request gets `BatchObservation.slice` for its own VM names and subnet, equal to what
  observing it alone returns, errors included (a config error stays with the configs it concerns).
* **freshness** - a request that became due at time D (its key was queued at D, or its resync slot was D) is
  answered only by an observation that *started* at or after D, so it reflects whatever made it due: a batch
  still collecting always qualifies; a running or finished one only if it started late enough and covers the
  request. A request without a due time counts as due now.
* **failure** - what fails a batch (an outage, refused credentials) fails every request it answers, as it
  would have failed each alone; a failed batch also answers fresh, covered requests that arrive after it, so
  during an outage the queued configs of a project back off without one call each.
* **bounded memory** - a finished batch is kept only while configs it was made for have not come for their
  slice (at most `retain` seconds), then one `window` more; at most `MAX_KEPT` per identity.

`window` 0 disables all of it: every request is observed alone, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from multinic_ctrl import metrics

from .client import OpenStackClient
from .credentials import Credentials
from .errors import OpenStackUnavailable
from .models import Observation
from .observe import BatchObservation, ObserveRequest

log = structlog.get_logger(__name__)

DEFAULT_WINDOW = 0.05
DEFAULT_RETAIN = 120.0
MAX_KEPT = 4
DEFAULT_MAX_PEERS = 10_000


@dataclass(frozen=True)
class Peer:
    """A queued config the controller expects to need OpenStack soon: who it is and what it will ask."""

    key: str
    vm_names: tuple[str, ...]
    subnet_name: str


PeerSource = Callable[[str], Sequence[Peer]]
"""group → the configs of that group (a guess at an identity made without reading Secrets) that are due now."""


class _Batch:
    """One observation for one identity: collecting requests, then running, then finished (kept a while)."""

    def __init__(self, identity: str, creds: Credentials) -> None:
        self.identity = identity
        self.creds = creds
        self.requests: dict[ObserveRequest, None] = {}
        self.groups: set[str] = set()
        self.keys: set[str] = set()
        self.waiting_peers: set[str] = set()
        self.members = 0
        self.peers = 0
        self.started: float | None = None
        self.finished: float | None = None
        self.last_used = 0.0
        self.outcome: asyncio.Future[BatchObservation] = asyncio.get_running_loop().create_future()
        # Nobody may be left to ask (every member cancelled): an exception must still count as retrieved.
        self.outcome.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.names: frozenset[str] = frozenset()
        self.subnets: frozenset[str] = frozenset()

    def add(self, request: ObserveRequest, key: str | None, group: str | None) -> None:
        self.requests[request] = None
        self.members += 1
        if key is not None:
            self.keys.add(key)
        if group is not None:
            self.groups.add(group)

    def may_cover(self, request: ObserveRequest) -> bool:
        """Before the answer is in: every name and the subnet are asked for (the answer decides the rest)."""
        return request.subnet_name in self.subnets and self.names.issuperset(request.vm_names)


class ObservationCoalescer:
    """Serve `observe` requests per identity from shared batches (see the module docstring)."""

    def __init__(
        self,
        client: OpenStackClient,
        *,
        window: float = DEFAULT_WINDOW,
        peers: PeerSource | None = None,
        clock: Callable[[], float] | None = None,
        retain: float = DEFAULT_RETAIN,
        max_peers: int = DEFAULT_MAX_PEERS,
    ) -> None:
        """`clock` must be the clock the due times come from (the work queue's; default: the event loop's)."""
        if window < 0:
            raise ValueError("window must not be negative")
        self.client = client
        self.window = window
        self._peers = peers
        self._clock = clock
        self.retain = retain
        self.max_peers = max_peers
        self._collecting: dict[str, _Batch] = {}
        self._recent: dict[str, list[_Batch]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def observe(
        self,
        creds: Credentials,
        vm_names: Sequence[str],
        subnet_name: str,
        *,
        due: float | None = None,
        key: str | None = None,
        group: str | None = None,
    ) -> Observation:
        """This config's observation. `due`: when it became due (work-queue clock); `key` names the config and
        `group` is its peer group (see `PeerSource`), so batches can take its queued peers along."""
        if self.window <= 0 or self._closed:
            return await self._alone(creds, vm_names, subnet_name)
        request = ObserveRequest(tuple(vm_names), subnet_name)
        identity = creds.cache_key()
        now = self._now()
        due = now if due is None else min(due, now)
        self._prune(now)
        tried: set[int] = set()
        while True:
            batch = self._answering(identity, request, due, tried)
            if batch is None:
                break
            tried.add(id(batch))
            how = "cached" if batch.outcome.done() else "in_flight"
            try:
                result = await asyncio.shield(batch.outcome)
            except Exception:
                # Another config's batch failed for everyone (an outage): fail like it, without a call.
                self._served(batch, key, how)
                raise
            if result.covers(request.vm_names, request.subnet_name):
                self._served(batch, key, how)
                return result.slice(request.vm_names, request.subnet_name)
        batch = self._collecting.get(identity)
        served_by = "joined"
        if batch is None:
            batch = _Batch(identity, creds)
            self._collecting[identity] = batch
            task = asyncio.get_running_loop().create_task(self._run(batch), name="openstack-observation")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            served_by = "new"
        batch.add(request, key, group)
        metrics.OPENSTACK_OBSERVE_REQUESTS.labels(served_by=served_by).inc()
        result = await asyncio.shield(batch.outcome)
        return result.slice(request.vm_names, request.subnet_name)

    async def _alone(self, creds: Credentials, vm_names: Sequence[str], subnet_name: str) -> Observation:
        metrics.OPENSTACK_OBSERVE_REQUESTS.labels(served_by="new").inc()
        metrics.OPENSTACK_OBSERVATION_CONFIGS.observe(1)
        try:
            observation = await self.client.observe(creds, vm_names, subnet_name)
        except Exception:
            metrics.OPENSTACK_OBSERVATIONS.labels(result="error").inc()
            raise
        metrics.OPENSTACK_OBSERVATIONS.labels(result="success").inc()
        return observation

    def _answering(self, identity: str, request: ObserveRequest, due: float, tried: set[int]) -> _Batch | None:
        """The newest running or finished batch that may answer `request`: started at or after `due`, and (for
        a finished one) covering it - failed batches cover what they were asked."""
        for batch in reversed(self._recent.get(identity, ())):
            if id(batch) in tried or batch.started is None or batch.started < due:
                continue
            if not batch.may_cover(request):
                continue
            outcome = batch.outcome
            answered = outcome.done() and not outcome.cancelled() and outcome.exception() is None
            if answered and not outcome.result().covers(request.vm_names, request.subnet_name):
                continue
            return batch
        return None

    def _served(self, batch: _Batch, key: str | None, how: str) -> None:
        metrics.OPENSTACK_OBSERVE_REQUESTS.labels(served_by=how).inc()
        batch.last_used = self._now()
        if key is not None:
            batch.waiting_peers.discard(key)

    async def _run(self, batch: _Batch) -> None:
        """Collect for one window, take the due peers along, observe, hand the answer to everyone."""
        try:
            await asyncio.sleep(self.window)
        except asyncio.CancelledError:
            self._collecting.pop(batch.identity, None)
            batch.outcome.set_exception(_shutting_down())
            raise
        if self._collecting.get(batch.identity) is batch:
            del self._collecting[batch.identity]
        self._take_peers(batch)
        requests = list(batch.requests)
        batch.names = frozenset(n for r in requests for n in r.vm_names)
        batch.subnets = frozenset(r.subnet_name for r in requests)
        batch.started = self._now()
        self._recent.setdefault(batch.identity, []).append(batch)
        try:
            result = await self.client.observe_batch(batch.creds, requests)
        except asyncio.CancelledError:
            batch.outcome.set_exception(_shutting_down())
            raise
        except Exception as exc:
            metrics.OPENSTACK_OBSERVATIONS.labels(result="error").inc()
            batch.outcome.set_exception(exc)
        else:
            metrics.OPENSTACK_OBSERVATIONS.labels(result="success").inc()
            batch.outcome.set_result(result)
        finally:
            batch.finished = batch.last_used = self._now()
            metrics.OPENSTACK_OBSERVATION_CONFIGS.observe(batch.members + batch.peers)
            log.debug(
                "OpenStack observation shared",
                asked=batch.members,
                taken_along=batch.peers,
                seconds=round(batch.finished - batch.started, 3),
            )
            self._keep_newest(batch.identity)

    def _take_peers(self, batch: _Batch) -> None:
        if self._peers is None:
            return
        for group in sorted(batch.groups):
            try:
                peers = self._peers(group)
            except Exception:
                log.exception("Looking up configs to observe along failed; observing without them")
                return
            for peer in peers:
                if batch.peers >= self.max_peers:
                    return
                if peer.key in batch.keys or peer.key in batch.waiting_peers:
                    continue
                batch.requests[ObserveRequest(peer.vm_names, peer.subnet_name)] = None
                batch.waiting_peers.add(peer.key)
                batch.peers += 1

    def _prune(self, now: float) -> None:
        """Drop finished batches nobody is waiting for (see "bounded memory")."""
        for identity in list(self._recent):
            kept = [
                b
                for b in self._recent[identity]
                if b.finished is None
                or (now - b.finished < self.retain and (b.waiting_peers or now - b.last_used < self.window))
            ]
            if kept:
                self._recent[identity] = kept
            else:
                del self._recent[identity]

    def _keep_newest(self, identity: str) -> None:
        kept = self._recent.get(identity, [])
        finished = [b for b in kept if b.finished is not None]
        for old in finished[: max(0, len(finished) - MAX_KEPT)]:
            kept.remove(old)

    def kept_batches(self, creds: Credentials | None = None) -> int:
        """Running and finished batches held, of one identity or of all (for tests and debugging)."""
        if creds is not None:
            return len(self._recent.get(creds.cache_key(), ()))
        return sum(len(v) for v in self._recent.values())

    async def close(self) -> None:
        """Stop: requests waiting on a batch get an `OpenStackUnavailable`; later ones are observed alone."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._collecting.clear()
        self._recent.clear()


def _shutting_down() -> OpenStackUnavailable:
    return OpenStackUnavailable("openstack", "observe", 0, "the controller is shutting down")
