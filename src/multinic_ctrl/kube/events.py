"""A core/v1 Event recorder that cannot flood the apiserver.

core/v1 Events (not events.k8s.io/v1) because that is what `kubectl describe` shows and every RBAC example
grants.

Why the extra machinery: a reconcile loop failing every few milliseconds would otherwise create thousands of
Event objects (etcd write amplification, and the useful history scrolls away). So, as client-go's recorder
does:

* **aggregation** - an identical event (same object, type, reason, message) within `aggregation_window` is not
  created again; the existing Event's `count` and `lastTimestamp` are patched, at most once per
  `update_interval` (repeats in between are only counted and flushed later);
* **spam filter** - a token bucket per involved object (burst 25, one more every 5 min) drops what still gets
  through;
* **non-blocking** - `record()` is synchronous and only enqueues; a background task (`run()`, supervise it)
  writes, so a slow apiserver never slows reconciles; when the bounded buffer is full, events are dropped and
  counted.
"""

from __future__ import annotations

import asyncio
import socket
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from .client import CORE_EVENTS, ApiError, JsonObj, KubeClient

log = structlog.get_logger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
_MAX_MESSAGE = 1024


def _now_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Aggregate:
    name: str | None  # Event object name once created
    namespace: str
    count: int
    sent_count: int
    first: datetime
    last: datetime
    last_sent: float  # monotonic
    body: JsonObj


@dataclass
class _Bucket:
    tokens: float
    last: float


class EventRecorder:
    """Records Events about objects; aggregated, rate limited and written in the background."""

    def __init__(
        self,
        client: KubeClient,
        component: str,
        *,
        instance: str | None = None,
        aggregation_window: float = 600.0,
        update_interval: float = 10.0,
        burst: int = 25,
        refill_seconds: float = 300.0,
        max_pending: int = 1000,
        cache_size: int = 4096,
    ) -> None:
        self.client = client
        self.component = component
        self.instance = instance or socket.gethostname()
        self.aggregation_window = aggregation_window
        self.update_interval = update_interval
        self.burst = burst
        self.refill_seconds = refill_seconds
        self.cache_size = cache_size
        self._pending: asyncio.Queue[tuple[tuple[str, ...], JsonObj]] = asyncio.Queue(max_pending)
        self._cache: OrderedDict[tuple[str, ...], _Aggregate] = OrderedDict()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._unsent: dict[int, _Aggregate] = {}  # aggregates whose count changed since the last write
        self.dropped = 0  # buffer full or spam-filtered
        self.writes = 0  # API calls made (creates + patches)

    # ---- producer side ----------------------------------------------------------------------------
    def record(self, obj: Mapping[str, Any], event_type: str, reason: str, message: str) -> None:
        """Queue an Event about `obj` (a full object or at least apiVersion/kind/metadata). Never blocks."""
        meta = obj.get("metadata") or {}
        involved = {
            "apiVersion": obj.get("apiVersion", ""),
            "kind": obj.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace") or "",
            "uid": meta.get("uid", ""),
        }
        involved = {k: v for k, v in involved.items() if v}
        message = message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."
        key = (
            involved.get("kind", ""),
            involved.get("namespace", ""),
            involved.get("name", ""),
            involved.get("uid", ""),
            event_type,
            reason,
            message,
        )
        event: JsonObj = {
            "involvedObject": involved,
            "type": event_type,
            "reason": reason,
            "message": message,
        }
        try:
            self._pending.put_nowait((key, event))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("Event buffer full; event dropped.", reason=reason, object=involved.get("name"))

    def normal(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self.record(obj, NORMAL, reason, message)

    def warning(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        self.record(obj, WARNING, reason, message)

    # ---- writer side ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Write queued events forever; flush deferred count updates every `update_interval`."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout(self.update_interval):
                    key, event = await self._pending.get()
            except TimeoutError:
                await self._flush(loop.time())
                continue
            try:
                await self._handle(key, event, loop.time())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Could not write Event.", reason=event.get("reason"), error=repr(exc))
            await self._flush(loop.time())

    async def drain(self) -> None:
        """Write everything queued now and flush deferred counts (tests, graceful shutdown)."""
        loop = asyncio.get_running_loop()
        while not self._pending.empty():
            key, event = self._pending.get_nowait()
            await self._handle(key, event, loop.time())
        await self._flush(loop.time(), force=True)

    def _allow(self, object_id: str, now: float) -> bool:
        bucket = self._buckets.get(object_id)
        if bucket is None:
            bucket = self._buckets[object_id] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self.cache_size:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(object_id)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.last) / self.refill_seconds)
            bucket.last = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    async def _handle(self, key: tuple[str, ...], event: JsonObj, now: float) -> None:
        wall = datetime.now(UTC)
        aggregate = self._cache.get(key)
        if aggregate is not None and (wall - aggregate.first).total_seconds() <= self.aggregation_window:
            aggregate.count += 1
            aggregate.last = wall
            self._cache.move_to_end(key)
            self._unsent[id(aggregate)] = aggregate
            if aggregate.name is not None and now - aggregate.last_sent >= self.update_interval:
                await self._send_update(aggregate, now)
            return
        object_id = "/".join(key[:4])
        if not self._allow(object_id, now):
            self.dropped += 1
            return
        involved = event["involvedObject"]
        namespace = involved.get("namespace") or "default"
        body: JsonObj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{involved.get('name', 'event')}.", "namespace": namespace},
            "involvedObject": involved,
            "type": event["type"],
            "reason": event["reason"],
            "message": event["message"],
            "count": 1,
            "firstTimestamp": _now_iso(wall),
            "lastTimestamp": _now_iso(wall),
            "source": {"component": self.component, "host": self.instance},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        }
        aggregate = _Aggregate(None, namespace, 1, 1, wall, wall, now, body)
        self._cache[key] = aggregate
        if len(self._cache) > self.cache_size:
            _, evicted = self._cache.popitem(last=False)
            self._unsent.pop(id(evicted), None)
        created = await self.client.create(CORE_EVENTS, body, namespace)
        self.writes += 1
        aggregate.name = (created.get("metadata") or {}).get("name")

    async def _send_update(self, aggregate: _Aggregate, now: float) -> None:
        if aggregate.name is None or aggregate.count == aggregate.sent_count:
            self._unsent.pop(id(aggregate), None)
            return
        patch = {"count": aggregate.count, "lastTimestamp": _now_iso(aggregate.last)}
        aggregate.last_sent = now
        try:
            await self.client.patch(CORE_EVENTS, aggregate.name, patch, aggregate.namespace)
            self.writes += 1
            aggregate.sent_count = aggregate.count
            self._unsent.pop(id(aggregate), None)
        except ApiError as exc:
            if exc.status != 404:
                raise
            self._unsent.pop(id(aggregate), None)
            aggregate.name = None  # the Event expired (TTL): the next repeat starts a new one
            aggregate.first = datetime.fromtimestamp(0, UTC)

    async def _flush(self, now: float, *, force: bool = False) -> None:
        for aggregate in list(self._unsent.values()):
            if aggregate.count == aggregate.sent_count:
                self._unsent.pop(id(aggregate), None)
            elif force or now - aggregate.last_sent >= self.update_interval:
                try:
                    await self._send_update(aggregate, now)
                except Exception as exc:
                    log.warning("Could not update Event count.", event=aggregate.name, error=repr(exc))
