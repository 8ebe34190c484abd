"""Informer on a real kube-apiserver: list+watch, restart without losing events, 410 relist with deletes.

ConfigMaps (core/v1) stand in for any resource: the informer is generic and needs no CRD here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from multinic_ctrl.kube.client import CONFIGMAPS, KubeClient, load_api_client
from multinic_ctrl.kube.informer import Informer
from multinic_ctrl.kube.runner import Controller
from multinic_ctrl.kube.store import label_index
from tests.support.control_plane import ControlPlane, free_port

pytestmark = pytest.mark.integration


def configmap(name: str, value: str = "v", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": value}}


class Events:
    """Handler recording (type, name, data.k) tuples."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def attach(self, informer: Informer) -> None:
        informer.add_handler(
            lambda o: self.seen.append(("add", o["metadata"]["name"], o.get("data", {}).get("k", ""))),
            lambda old, new: self.seen.append(("update", new["metadata"]["name"], new.get("data", {}).get("k", ""))),
            lambda o: self.seen.append(("delete", o["metadata"]["name"], o.get("data", {}).get("k", ""))),
        )


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.1)


async def server_state(client: KubeClient, namespace: str) -> dict[str, str]:
    listed = await client.list(CONFIGMAPS, namespace)
    return {f"{namespace}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in listed["items"]}


def store_state(informer: Informer) -> dict[str, str]:
    return {key: informer.store.resource_version(key) or "" for key in list(informer.store)}


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        assert await informer.wait_synced(30), "informer did not sync"
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if task.done() and not task.cancelled() and task.exception():
            raise task.exception()  # type: ignore[misc]


async def test_list_watch_handlers_store_and_runner(kube_api: Any, namespace: str) -> None:
    client = KubeClient(kube_api)
    await client.create(CONFIGMAPS, configmap("pre", app="x"), namespace)
    informer = Informer(
        client, CONFIGMAPS, namespace=namespace, indexers={"app": label_index("app")}, inactivity_timeout=20
    )
    events = Events()
    events.attach(informer)
    reconciled: list[str] = []

    async def reconcile(key: str) -> None:
        reconciled.append(key)

    controller = Controller("t-informer", reconcile, workers=2)
    controller.watch(informer)
    selected = Informer(client, CONFIGMAPS, namespace=namespace, label_selector="app=y", inactivity_timeout=20)
    async with running(informer), running(selected):
        await client.create(CONFIGMAPS, configmap("labelled", app="y"), namespace)
        await eventually(lambda: list(selected.store) == [f"{namespace}/labelled"], 10, "label-selected informer")
        await client.delete(CONFIGMAPS, "labelled", namespace)
        await eventually(lambda: len(selected.store) == 0, 10, "label-selected delete")
        await eventually(lambda: ("delete", "labelled", "v") in events.seen, 10, "unselected informer sees all")
        events.seen[:] = [e for e in events.seen if e[1] != "labelled"]
        workers = asyncio.create_task(controller.run_workers())
        assert ("add", "pre", "v") in events.seen
        await client.create(CONFIGMAPS, configmap("new", app="x"), namespace)
        await client.patch(CONFIGMAPS, "pre", {"data": {"k": "changed"}}, namespace)
        await client.delete(CONFIGMAPS, "new", namespace)
        await eventually(lambda: ("delete", "new", "v") in events.seen, 10, "delete event")
        assert events.seen == [
            ("add", "pre", "v"),
            ("add", "new", "v"),
            ("update", "pre", "changed"),
            ("delete", "new", "v"),
        ]
        assert store_state(informer) == await server_state(client, namespace)
        assert [o["metadata"]["name"] for o in informer.store.by_index("app", "x")] == ["pre"]
        await eventually(lambda: {f"{namespace}/pre", f"{namespace}/new"} <= set(reconciled), 10, "reconciles")
        assert await controller.shutdown(5)
        await asyncio.wait_for(workers, 5)


class FreezableProxy:
    """Loopback TCP proxy in front of the apiserver.

    `freeze()` silently stalls all current connections (new ones work normally): a half-open stream.
    `partition()` drops all connections and refuses new ones until `heal()`: a network partition that keeps the
    informer away while the cluster changes.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._frozen: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.partitioned = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        for flag in self._frozen:
            flag.set()

    def partition(self) -> None:
        self.partitioned = True
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def heal(self) -> None:
        self.partitioned = False

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, frozen: asyncio.Event) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(65536)
                if frozen.is_set():
                    await asyncio.Event().wait()  # hold the bytes; keep the socket open
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.partitioned:
            client_writer.transport.abort()
            return
        self.connections += 1
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        self._writers += [client_writer, upstream_writer]
        frozen = asyncio.Event()
        self._frozen.append(frozen)
        for coro in (
            self._pump(client_reader, upstream_writer, frozen),
            self._pump(upstream_reader, client_writer, frozen),
        ):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _kubeconfig_for(control_plane: ControlPlane, server: str, path: Path) -> Path:
    config = yaml.safe_load(Path(control_plane.kubeconfig_path).read_text())
    config["clusters"][0]["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.asynccontextmanager
async def second_apiserver(control_plane: ControlPlane, tmp_path: Path) -> AsyncIterator[KubeClient]:
    """Another kube-apiserver on the same etcd, so the cluster can change while the informer's one is down."""
    port = free_port()
    argv = [a for a in control_plane.apiserver_args() if not a.startswith(("--secure-port=", "--audit-log-path="))]
    argv += [f"--secure-port={port}", f"--audit-log-path={tmp_path / 'audit-b.log'}"]
    url = f"https://127.0.0.1:{port}"
    name = f"apiserver-b-{port}"

    def ready() -> bool:
        return control_plane._http_ok(f"{url}/readyz")

    await asyncio.to_thread(control_plane.start_process, name, argv, ready)
    client = KubeClient(
        await load_api_client(str(_kubeconfig_for(control_plane, url, tmp_path / "b.kubeconfig"))), owns_api_client=True
    )
    try:
        yield client
    finally:
        await client.close()
        # ControlPlane has no public stop for one extra process; stop it now rather than at session end
        proc = control_plane._extra.pop(name, None)
        if proc is not None:
            await asyncio.to_thread(proc.stop)


async def test_no_event_lost_across_apiserver_restart(
    kube_api: Any, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    client = KubeClient(kube_api)
    async with second_apiserver(control_plane, tmp_path) as other:
        for name in ("keep", "change", "remove"):
            await client.create(CONFIGMAPS, configmap(name), namespace)
        informer = Informer(
            client, CONFIGMAPS, namespace=namespace, backoff_initial=0.5, backoff_cap=2.0, inactivity_timeout=20
        )
        events = Events()
        events.attach(informer)
        async with running(informer):
            events.seen.clear()
            await asyncio.to_thread(control_plane.stop_apiserver)
            try:
                # the informer's apiserver is down; the cluster keeps changing through the other one
                await other.create(CONFIGMAPS, configmap("born"), namespace)
                await other.patch(CONFIGMAPS, "change", {"data": {"k": "while-down"}}, namespace)
                await other.delete(CONFIGMAPS, "remove", namespace)
                await asyncio.sleep(1.5)  # let the informer notice and back off at least once
                assert informer.stats.errors >= 1
            finally:
                await asyncio.to_thread(control_plane.start_apiserver)
            expected = await server_state(client, namespace)
            await eventually(lambda: store_state(informer) == expected, 60, "store equals the server's list")
            assert sorted(events.seen) == [
                ("add", "born", "v"),
                ("delete", "remove", "v"),
                ("update", "change", "while-down"),
            ]
            # and the informer keeps working after recovering
            await client.create(CONFIGMAPS, configmap("after"), namespace)
            await eventually(lambda: ("add", "after", "v") in events.seen, 20, "event after restart")


async def _etcd_compact(etcd_url: str) -> int:
    """Compact etcd at its current revision (what the apiserver does every 5 min), via the v3 JSON gateway."""
    async with aiohttp.ClientSession() as session:
        key = base64.b64encode(b"/").decode()
        async with session.post(f"{etcd_url}/v3/kv/range", json={"key": key, "limit": 1}) as resp:
            resp.raise_for_status()
            revision = int((await resp.json())["header"]["revision"])
        async with session.post(f"{etcd_url}/v3/kv/compaction", json={"revision": revision, "physical": True}) as resp:
            resp.raise_for_status()
    return revision


async def test_expired_resource_version_relists_with_deletes(
    kube_api: Any, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Cut the informer off, change the cluster, compact etcd and restart the apiserver (fresh watch cache):
    the informer's resourceVersion can then be served neither from the cache nor from etcd → 410 → relist,
    with delete events for what vanished meanwhile."""
    proxy = FreezableProxy("127.0.0.1", control_plane.apiserver_port)
    await proxy.start()
    url = f"https://127.0.0.1:{proxy.port}"
    proxied = KubeClient(
        await load_api_client(str(_kubeconfig_for(control_plane, url, tmp_path / "p.kubeconfig"))), owns_api_client=True
    )
    client = KubeClient(kube_api)
    for name in ("keep", "change", "gone1", "gone2"):
        await client.create(CONFIGMAPS, configmap(name), namespace)
    informer = Informer(
        proxied, CONFIGMAPS, namespace=namespace, backoff_initial=0.2, backoff_cap=1.0, inactivity_timeout=20
    )
    events = Events()
    events.attach(informer)
    try:
        async with running(informer):
            events.seen.clear()
            stale_rv = informer.resource_version
            proxy.partition()
            await client.delete(CONFIGMAPS, "gone1", namespace)
            await client.delete(CONFIGMAPS, "gone2", namespace)
            await client.patch(CONFIGMAPS, "change", {"data": {"k": "new"}}, namespace)
            await client.create(CONFIGMAPS, configmap("born"), namespace)
            await _etcd_compact(control_plane.etcd_url)
            await asyncio.to_thread(control_plane.stop_apiserver)
            await asyncio.to_thread(control_plane.start_apiserver)
            assert informer.stats.errors >= 1 and informer.resource_version == stale_rv
            proxy.heal()
            expected = await server_state(client, namespace)
            await eventually(lambda: store_state(informer) == expected, 60, "store equals the server's list")
            assert informer.stats.expired >= 1, f"expected a 410 for resourceVersion {stale_rv}"
            assert informer.stats.lists == 2
            assert sorted(events.seen) == [
                ("add", "born", "v"),
                ("delete", "gone1", "v"),
                ("delete", "gone2", "v"),
                ("update", "change", "new"),
            ]
    finally:
        await proxied.close()
        await proxy.stop()
