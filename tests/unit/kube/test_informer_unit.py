"""Informer logic against a scripted fake API: event application, 410 relist diff, watchdog, backoff resume.

The real-apiserver behaviour is covered in tests/integration/test_informer*.py; these pin down the state machine
quickly and deterministically.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from multinic_ctrl.kube.client import CONFIGMAPS, ApiError, Resource
from multinic_ctrl.kube.informer import Informer


def cm(name: str, rv: str, value: str = "v") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}, "data": {"k": value}}


class _Content:
    def __init__(self, chunks: asyncio.Queue[bytes]) -> None:
        self._chunks = chunks

    async def readany(self) -> bytes:
        return await self._chunks.get()


class _Response:
    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.content = _Content(self.chunks)

    def send(self, event_type: str, obj: dict[str, Any]) -> None:
        self.chunks.put_nowait(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")

    def end(self) -> None:
        self.chunks.put_nowait(b"")


class FakeClient:
    """Serves scripted LIST results and hands each WATCH a response the test feeds."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.list_rv = "10"
        self.watch_rvs: list[str] = []
        self.watches: asyncio.Queue[_Response] = asyncio.Queue()
        self.watch_errors: list[ApiError] = []
        self.lists = 0

    async def list(self, resource: Resource, namespace: str | None = None, **kw: Any) -> dict[str, Any]:
        self.lists += 1
        return {"items": json.loads(json.dumps(self.items)), "metadata": {"resourceVersion": self.list_rv}}

    @asynccontextmanager
    async def watch_stream(
        self, resource: Resource, namespace: str | None = None, *, resource_version: str, **kw: Any
    ) -> AsyncIterator[_Response]:
        self.watch_rvs.append(resource_version)
        if self.watch_errors:
            raise self.watch_errors.pop(0)
        response = _Response()
        await self.watches.put(response)
        yield response


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def add(self, obj: dict[str, Any]) -> None:
        self.events.append(("add", obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))

    def update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.events.append(("update", new["metadata"]["name"], new["metadata"]["resourceVersion"]))

    def delete(self, obj: dict[str, Any]) -> None:
        self.events.append(("delete", obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def _start(client: FakeClient, **kw: Any) -> tuple[Informer, Recorder, asyncio.Task[None]]:
    informer = Informer(client, CONFIGMAPS, namespace="ns", backoff_initial=0.01, **kw)  # type: ignore[arg-type]
    rec = Recorder()
    informer.add_handler(rec.add, rec.update, rec.delete)
    task = asyncio.create_task(informer.run())
    assert await informer.wait_synced(1)
    return informer, rec, task


async def test_list_then_watch_applies_events_and_tracks_resource_version() -> None:
    client = FakeClient()
    client.items = [cm("a", "5"), cm("b", "6")]
    informer, rec, task = await _start(client)
    assert rec.events == [("add", "a", "5"), ("add", "b", "6")]
    assert informer.store.get("ns/a")["kind"] == "ConfigMap", "list items get apiVersion/kind filled"  # type: ignore[index]
    stream = await asyncio.wait_for(client.watches.get(), 1)
    assert client.watch_rvs == ["10"]
    stream.send("MODIFIED", cm("a", "11", "new"))
    stream.send("ADDED", cm("c", "12"))
    stream.send("DELETED", cm("b", "13"))
    stream.send("BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": "20"}})
    await _settle()
    assert rec.events[2:] == [("update", "a", "11"), ("add", "c", "12"), ("delete", "b", "13")]
    assert informer.resource_version == "20"
    assert sorted(informer.store.keys()) == ["ns/a", "ns/c"]
    assert informer.store.get("ns/a")["data"]["k"] == "new"  # type: ignore[index]
    # the server ends the stream (timeoutSeconds): resume from the bookmark without relisting
    stream.end()
    await asyncio.wait_for(client.watches.get(), 1)
    assert client.watch_rvs == ["10", "20"] and client.lists == 1
    task.cancel()


async def test_in_stream_410_relists_and_emits_the_differences() -> None:
    client = FakeClient()
    client.items = [cm("keep", "1"), cm("change", "2"), cm("gone", "3")]
    informer, rec, task = await _start(client)
    stream = await asyncio.wait_for(client.watches.get(), 1)
    rec.events.clear()
    client.items = [cm("keep", "1"), cm("change", "30", "new"), cm("born", "31")]
    client.list_rv = "40"
    stream.send("ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"})
    await asyncio.wait_for(client.watches.get(), 1)
    assert sorted(rec.events) == [("add", "born", "31"), ("delete", "gone", "3"), ("update", "change", "30")]
    assert client.watch_rvs[-1] == "40" and informer.stats.expired == 1
    assert sorted(informer.store.keys()) == ["ns/born", "ns/change", "ns/keep"]
    task.cancel()


async def test_http_410_at_watch_start_relists() -> None:
    client = FakeClient()
    client.items = [cm("a", "1")]
    client.watch_errors = [ApiError(410, "Gone", {"code": 410, "message": "too old resource version"})]
    informer, _, task = await _start(client)
    await asyncio.wait_for(client.watches.get(), 1)
    assert client.lists == 2 and informer.stats.expired == 1
    task.cancel()


async def test_watchdog_reconnects_a_silent_stream_from_the_last_resource_version() -> None:
    client = FakeClient()
    informer, _, task = await _start(client, inactivity_timeout=0.1)
    stream = await asyncio.wait_for(client.watches.get(), 1)
    stream.send("ADDED", cm("a", "15"))
    # then silence: no line, no close
    await asyncio.wait_for(client.watches.get(), 1)
    assert informer.stats.watchdog_fired == 1
    assert client.watch_rvs == ["10", "15"] and client.lists == 1
    task.cancel()


async def test_errors_back_off_and_resume_without_relisting() -> None:
    client = FakeClient()
    client.watch_errors = [ApiError(500, "Internal"), ApiError(503, "Unavailable")]
    informer, _, task = await _start(client)
    stream = await asyncio.wait_for(client.watches.get(), 2)
    assert client.watch_rvs == ["10", "10", "10"] and client.lists == 1
    assert informer.stats.errors == 2
    stream.send("ERROR", {"kind": "Status", "code": 500, "message": "internal"})
    await asyncio.wait_for(client.watches.get(), 2)
    assert client.lists == 1 and informer.stats.errors == 3
    task.cancel()


async def test_failing_handler_does_not_stop_the_informer() -> None:
    client = FakeClient()
    informer = Informer(client, CONFIGMAPS, namespace="ns")  # type: ignore[arg-type]
    seen: list[str] = []

    def bad(obj: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    async def good(obj: dict[str, Any]) -> None:
        seen.append(obj["metadata"]["name"])

    informer.add_handler(on_add=bad)
    informer.add_handler(on_add=good)
    task = asyncio.create_task(informer.run())
    stream = await asyncio.wait_for(client.watches.get(), 1)
    stream.send("ADDED", cm("a", "11"))
    stream.send("ADDED", cm("b", "12"))
    await _settle()
    assert seen == ["a", "b"] and informer.stats.handler_errors == 2
    assert not task.done()
    task.cancel()


async def test_stream_closed_at_once_without_events_backs_off() -> None:
    client = FakeClient()
    informer, _, task = await _start(client)
    for _ in range(3):
        stream = await asyncio.wait_for(client.watches.get(), 2)
        stream.end()
    await asyncio.wait_for(client.watches.get(), 2)
    assert informer.stats.errors == 3, "immediately closed streams must go through the backoff"
    assert client.lists == 1
    task.cancel()


class PagedClient(FakeClient):
    """LIST in pages of `limit` with continue tokens; records what the store held when each page was asked for;
    `expire_once` makes the first continue token expire (410) after the listing changed."""

    def __init__(self) -> None:
        super().__init__()
        self.informer: Informer | None = None
        self.calls: list[tuple[int | None, str | None, int]] = []  # (limit, continue, objects cached by then)
        self.expire_once = False
        self.after_expiry: list[dict[str, Any]] = []

    async def list(self, resource: Resource, namespace: str | None = None, **kw: Any) -> dict[str, Any]:
        self.lists += 1
        limit, token = kw.get("limit"), kw.get("continue_token")
        assert self.informer is not None
        self.calls.append((limit, token, len(self.informer.store)))
        if token and self.expire_once:
            self.expire_once = False
            self.items = self.after_expiry
            raise ApiError(410, "Expired", {"message": "continue token expired"})
        start = int(token or 0)
        end = len(self.items) if not limit else start + limit
        page = json.loads(json.dumps(self.items[start:end]))
        meta: dict[str, Any] = {"resourceVersion": self.list_rv}
        if end < len(self.items):
            meta["continue"] = str(end)
        return {"items": page, "metadata": meta}


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "data": {"k": obj["data"]["k"][:1]}}


async def test_relist_stores_each_page_before_asking_for_the_next() -> None:
    """A LIST of thousands of objects is never held whole: each page is transformed into the store first."""
    client = PagedClient()
    client.items = [cm(f"o{i:02d}", str(i), "x" * 100) for i in range(10)]
    informer = Informer(client, CONFIGMAPS, namespace="ns", page_size=4, transform=slim)  # type: ignore[arg-type]
    client.informer = informer
    task = asyncio.create_task(informer.run())
    assert await informer.wait_synced(1)
    assert client.calls == [(4, None, 0), (4, "4", 4), (4, "8", 8)]
    assert len(informer.store) == 10 and informer.store.get("ns/o09")["data"] == {"k": "x"}  # type: ignore[index]
    task.cancel()


async def test_expired_continue_token_relists_whole_and_forgets_what_that_list_lacks() -> None:
    client = PagedClient()
    client.items = [cm(f"o{i}", str(i)) for i in range(6)]
    informer = Informer(client, CONFIGMAPS, namespace="ns", page_size=4)  # type: ignore[arg-type]
    client.informer = informer
    rec = Recorder()
    informer.add_handler(rec.add, rec.update, rec.delete)
    client.expire_once = True
    client.after_expiry = [cm(f"o{i}", str(i)) for i in range(1, 6)]  # o0 deleted between the two snapshots
    task = asyncio.create_task(informer.run())
    assert await informer.wait_synced(1)
    assert [c[:2] for c in client.calls] == [(4, None), (4, "4"), (None, None)]
    assert sorted(informer.store.keys()) == [f"ns/o{i}" for i in range(1, 6)]
    assert ("delete", "o0", "0") in rec.events, "listed in the first, partial snapshot only: deleted"
    task.cancel()
