"""A list-then-watch informer for any resource, on raw watch streams.

Loop: LIST (paginated) → replace the store, emitting add/update/delete for the differences → WATCH from the
list's resourceVersion with bookmarks → apply events, tracking resourceVersion from every line (bookmarks
included) → when the server closes the stream (its randomised `timeoutSeconds`) resume from the last
resourceVersion.

Failure handling, each for a reason learned the hard way elsewhere (ARCHITECTURE.md, "Known pitfalls"):

* an **inactivity watchdog** closes a stream that has delivered no line for `inactivity_timeout` seconds: a
  half-open TCP connection (NAT/LB dropped state) otherwise hangs forever because no read timeout applies to
  watches; the API server sends bookmarks about once a minute, so ~70 s of silence means the stream is dead,
  not idle;
* **410 Gone** (HTTP status when the watch starts, or an in-stream ERROR event) means our resourceVersion was
  compacted away: relist and diff against the store so deletions missed while away still produce delete
  events;
* any other failure reconnects with **capped exponential backoff and jitter** so a fleet of controllers does
  not stampede a recovering apiserver, and keeps the last resourceVersion so nothing in between is lost.

`run()` never returns while healthy; it is meant to run as a supervised task (see `supervisor.py`) so that a
crash makes liveness fail instead of leaving a process that silently watches nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
import structlog

from .client import ApiError, JsonObj, KubeClient, Resource, object_key, read_lines
from .store import IndexFunc, Store, Transform

log = structlog.get_logger(__name__)

_MIN_HEALTHY_WATCH = 1.0
"""A stream closed sooner than this (seconds) without a single line counts as a failure (→ backoff)."""

_RELIST_YIELD_EVERY = 128
"""Items dispatched between two yields to the event loop during a relist."""

AddHandler = Callable[[JsonObj], Awaitable[None] | None]
UpdateHandler = Callable[[JsonObj, JsonObj], Awaitable[None] | None]
DeleteHandler = Callable[[JsonObj], Awaitable[None] | None]


class WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): a relist is needed."""


@dataclass
class _Handlers:
    on_add: AddHandler | None = None
    on_update: UpdateHandler | None = None
    on_delete: DeleteHandler | None = None
    read_only: bool = False


@dataclass
class InformerStats:
    """Counters for tests and debugging; not metrics (the queue metrics cover throughput)."""

    lists: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    expired: int = 0
    watchdog_fired: int = 0
    errors: int = 0
    last_error: str = ""
    handler_errors: int = 0
    event_types: dict[str, int] = field(default_factory=dict)


class Informer:
    """Keeps a `Store` in sync with one resource (optionally namespace/selector) and calls handlers."""

    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        name: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        inactivity_timeout: float = 70.0,
        watch_timeout_range: tuple[int, int] = (300, 600),
        backoff_initial: float = 0.8,
        backoff_cap: float = 30.0,
        page_size: int = 500,
        transform: Transform | None = None,
    ) -> None:
        if resource.namespaced is False and namespace:
            raise ValueError(f"{resource.plural} is cluster-scoped")
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.name = name or (f"{resource.plural}.{resource.group}" if resource.group else resource.plural)
        self.store = Store(indexers)
        self.inactivity_timeout = inactivity_timeout
        self.watch_timeout_range = watch_timeout_range
        self.backoff_initial = backoff_initial
        self.backoff_cap = backoff_cap
        self.page_size = page_size
        self._transform = transform
        self.stats = InformerStats()
        self._handlers: list[_Handlers] = []
        self._resource_version = ""
        self._synced = asyncio.Event()
        self._failures = 0
        self._log = log.bind(informer=self.name, namespace=namespace or "*")

    # ---- public -----------------------------------------------------------------------------------
    def add_handler(
        self,
        on_add: AddHandler | None = None,
        on_update: UpdateHandler | None = None,
        on_delete: DeleteHandler | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        """Register callbacks (sync or async). Objects passed are copies: handlers may keep or mutate them.

        `read_only=True` hands over the cached objects themselves, uncopied - for handlers that only derive keys
        (the runner's), where copying every event would cost about a third of the informer's throughput. Such a
        handler must neither mutate nor keep the objects.

        A handler registered after the initial sync does not get a replay of existing objects; register before
        `run()` starts (the runner does) or list the store yourself.
        """
        self._handlers.append(_Handlers(on_add, on_update, on_delete, read_only))

    @property
    def has_synced(self) -> bool:
        """True once the first LIST has been loaded into the store and its add events dispatched."""
        return self._synced.is_set()

    async def wait_synced(self, max_wait: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), max_wait)
        except TimeoutError:
            return False
        return True

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (list, event or bookmark): where the next watch resumes."""
        return self._resource_version

    async def run(self) -> None:
        """List, watch and recover forever (until cancelled)."""
        need_list = True
        self._log.info("Informer started.")
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                try:
                    await self._watch_once()
                except ApiError as exc:
                    if exc.status == 410:
                        raise WatchExpired(exc.message) from exc
                    raise
            except asyncio.CancelledError:
                self._log.info("Informer stopped.")
                raise
            except WatchExpired:
                self.stats.expired += 1
                self._log.info("Watch resourceVersion expired; relisting.", resource_version=self._resource_version)
                need_list = True
                continue  # relisting is itself the recovery: no backoff for the first try
            except (ApiError, aiohttp.ClientError, OSError, EOFError, TimeoutError, ValueError) as exc:
                await self._backoff(exc)
                continue

    # ---- list -------------------------------------------------------------------------------------
    async def _relist(self) -> None:
        """LIST (paginated) into the store, emitting the differences; then forget what the LIST no longer has.

        Page by page: each page's items are transformed and stored before the next page is asked for, so a
        LIST of 10,000 objects never sits in memory whole (as raw objects it would be several times the cache).
        An expired continue token restarts with one unpaginated LIST; what is missing from that one is deleted.
        """
        seen: set[str] = set()
        added = updated = deleted = listed = 0
        continue_token: str | None = None
        limit: int | None = self.page_size or None
        while True:
            try:
                page = await self.client.list(
                    self.resource,
                    self.namespace,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    limit=limit,
                    continue_token=continue_token,
                )
            except ApiError as exc:
                if exc.status == 410 and continue_token:
                    self._log.info("List continue token expired; listing again without pagination.")
                    seen.clear()  # a new snapshot: only what it lists survives the deletion pass below
                    continue_token, limit, listed = None, None, 0
                    continue
                raise
            meta = page.get("metadata") or {}
            items: list[JsonObj] = page.get("items") or []
            del page  # only the items are kept, and only until they are stored
            listed += len(items)
            adds, updates = await self._apply_listed(items, seen)
            added, updated = added + adds, updated + updates
            del items
            continue_token = meta.get("continue") or None
            if not continue_token:
                resource_version = str(meta.get("resourceVersion") or "")
                break
        self.stats.lists += 1
        for position, key in enumerate(list(self.store)):
            if position and position % _RELIST_YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if key not in seen:
                old = self.store.remove(key)
                if old is not None:
                    deleted += 1
                    await self._dispatch_delete(old)
        self._resource_version = resource_version
        first = not self._synced.is_set()
        self._synced.set()
        self._log.info(
            "Informer listed.",
            items=listed,
            added=added,
            updated=updated,
            deleted=deleted,
            resource_version=resource_version,
            initial=first,
        )

    async def _apply_listed(self, items: list[JsonObj], seen: set[str]) -> tuple[int, int]:
        """One page of a LIST into the store: (added, updated); unchanged objects (same resourceVersion) are
        skipped."""
        api_version = self.resource.api_version
        added = updated = 0
        for position, obj in enumerate(items):
            if position and position % _RELIST_YIELD_EVERY == 0:
                # A relist dispatches every item without any I/O in between: without a yield, 10,000 Secrets
                # would hold the event loop for the whole batch and starve lease renewal and probes.
                await asyncio.sleep(0)
            # list items carry no apiVersion/kind; fill them so handlers see the same shape as watch events
            obj.setdefault("apiVersion", api_version)
            if self.resource.kind:
                obj.setdefault("kind", self.resource.kind)
            if self._transform is not None:
                obj = self._transform(obj)
            key = object_key(obj)
            seen.add(key)
            old_rv = self.store.resource_version(key)
            new_rv = (obj.get("metadata") or {}).get("resourceVersion")
            if old_rv is not None and old_rv == new_rv:
                continue
            _, old = self.store.upsert(obj)
            if old is None:
                added += 1
                await self._dispatch_add(obj)
            else:
                updated += 1
                await self._dispatch_update(old, obj)
        return added, updated

    # ---- watch ------------------------------------------------------------------------------------
    async def _watch_once(self) -> None:
        """One watch stream until the server ends it or the watchdog fires; raises on errors/410."""
        timeout_seconds = random.randint(*self.watch_timeout_range)
        self.stats.watches += 1
        loop = asyncio.get_running_loop()
        async with self.client.watch_stream(
            self.resource,
            self.namespace,
            resource_version=self._resource_version,
            timeout_seconds=timeout_seconds,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        ) as response:
            self._log.debug("Watch opened.", resource_version=self._resource_version, timeout_seconds=timeout_seconds)
            lines = read_lines(response)
            opened = loop.time()
            received = 0
            try:
                while True:
                    deadline = loop.time() + self.inactivity_timeout
                    try:
                        async with asyncio.timeout_at(deadline):
                            line = await lines.__anext__()
                    except StopAsyncIteration:
                        if not received and loop.time() - opened < _MIN_HEALTHY_WATCH:
                            # something closes streams at once (proxy, overloaded server): reconnecting
                            # immediately would hot-loop, so treat it as a failure and back off
                            raise aiohttp.ServerDisconnectedError("watch stream closed without any event") from None
                        self._log.debug("Watch stream ended by the server.", resource_version=self._resource_version)
                        return
                    except TimeoutError:
                        self.stats.watchdog_fired += 1
                        self._log.warning(
                            "Watch stream silent for too long; reconnecting.",
                            inactivity_timeout=self.inactivity_timeout,
                            resource_version=self._resource_version,
                        )
                        return  # resume from the last resourceVersion right away
                    received += 1
                    await self._handle_line(line)
                    self._failures = 0  # a line arrived: the connection is healthy again
            finally:
                await lines.aclose()

    async def _handle_line(self, line: bytes) -> None:
        event = json.loads(line)
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise WatchExpired(obj.get("message", "410 Gone"))
            raise ApiError(int(code or 500), str(obj.get("reason") or "WatchError"), obj)
        resource_version = (obj.get("metadata") or {}).get("resourceVersion")
        if self._transform is not None and kind != "BOOKMARK":
            obj = self._transform(obj)
        self.stats.events += 1
        self.stats.event_types[str(kind)] = self.stats.event_types.get(str(kind), 0) + 1
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
        elif kind in ("ADDED", "MODIFIED"):
            _, old = self.store.upsert(obj)
            if old is None:
                await self._dispatch_add(obj)
            else:
                await self._dispatch_update(old, obj)
        elif kind == "DELETED":
            old = self.store.remove(object_key(obj))
            await self._dispatch_delete(obj)
        else:
            self._log.warning("Unknown watch event type ignored.", event_type=kind)
        if resource_version:
            self._resource_version = str(resource_version)

    # ---- dispatch ---------------------------------------------------------------------------------
    async def _call(self, func: Callable[..., Awaitable[None] | None], *args: JsonObj) -> None:
        """Run one handler; a failing handler is logged, never allowed to kill the watch loop."""
        try:
            result = func(*args)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.handler_errors += 1
            self._log.exception("Informer event handler failed.", handler=getattr(func, "__qualname__", "?"))

    async def _dispatch_add(self, obj: JsonObj) -> None:
        for handlers in self._handlers:
            if handlers.on_add is not None:
                await self._call(handlers.on_add, obj if handlers.read_only else _copy(obj))

    async def _dispatch_update(self, old: JsonObj, new: JsonObj) -> None:
        for handlers in self._handlers:
            if handlers.on_update is not None:
                if handlers.read_only:
                    await self._call(handlers.on_update, old, new)
                else:
                    await self._call(handlers.on_update, _copy(old), _copy(new))

    async def _dispatch_delete(self, obj: JsonObj) -> None:
        for handlers in self._handlers:
            if handlers.on_delete is not None:
                await self._call(handlers.on_delete, obj if handlers.read_only else _copy(obj))

    # ---- backoff ----------------------------------------------------------------------------------
    async def _backoff(self, exc: BaseException) -> None:
        self._failures += 1
        self.stats.errors += 1
        self.stats.last_error = repr(exc)
        ceiling = min(self.backoff_cap, self.backoff_initial * (2 ** min(self._failures - 1, 30)))
        delay = random.uniform(ceiling / 2, ceiling)  # "equal jitter": never 0, never above the cap
        self._log.warning(
            "Watch failed; retrying.",
            error=str(exc) or type(exc).__name__,
            error_type=type(exc).__name__,
            attempt=self._failures,
            retry_in=round(delay, 3),
            resource_version=self._resource_version,
        )
        await asyncio.sleep(delay)


def _copy(obj: JsonObj) -> JsonObj:
    """A deep copy of a JSON value, faster than `copy.deepcopy` for plain dict/list/str/number trees."""
    return json.loads(json.dumps(obj))  # type: ignore[no-any-return]
