"""A half-open watch stream (peer stops sending, connection stays up) is detected by the inactivity watchdog.

A loopback TCP proxy sits between the informer and the apiserver; `freeze()` makes every existing connection
stop forwarding in both directions without closing it - what a NAT or load balancer that silently dropped its
connection state looks like from the client. Without the watchdog the informer would wait forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from multinic_ctrl.kube.client import CONFIGMAPS, KubeClient, load_api_client
from multinic_ctrl.kube.informer import Informer
from support.control_plane import ControlPlane

from .test_informer import Events, configmap, eventually, server_state, store_state

pytestmark = pytest.mark.integration


class FreezableProxy:
    """TCP proxy; `freeze()` silently stalls all current connections, new ones work normally."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._frozen: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        for flag in self._frozen:
            flag.set()

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


async def test_watchdog_detects_half_open_stream_and_catches_up(
    kube_api: Any, namespace: str, control_plane: ControlPlane, tmp_path: Path
) -> None:
    proxy = FreezableProxy("127.0.0.1", control_plane.apiserver_port)
    await proxy.start()
    config = yaml.safe_load(Path(control_plane.kubeconfig_path).read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    kubeconfig = tmp_path / "proxy.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    proxied = KubeClient(await load_api_client(str(kubeconfig)), owns_api_client=True)
    direct = KubeClient(kube_api)
    informer = Informer(proxied, CONFIGMAPS, namespace=namespace, inactivity_timeout=3.0, backoff_initial=0.2)
    events = Events()
    events.attach(informer)
    task = asyncio.create_task(informer.run())
    try:
        assert await informer.wait_synced(30)
        await direct.create(CONFIGMAPS, configmap("before"), namespace)
        await eventually(lambda: ("add", "before", "v") in events.seen, 10, "event through the proxy")
        fired_before = informer.stats.watchdog_fired
        proxy.freeze()
        await direct.create(CONFIGMAPS, configmap("during"), namespace)
        await direct.delete(CONFIGMAPS, "before", namespace)
        await asyncio.sleep(1.0)
        assert ("add", "during", "v") not in events.seen, "the frozen stream must not deliver"
        expected = await server_state(direct, namespace)
        await eventually(lambda: store_state(informer) == expected, 15, "informer catches up after the watchdog")
        assert informer.stats.watchdog_fired > fired_before
        assert ("delete", "before", "v") in events.seen and ("add", "during", "v") in events.seen
        assert informer.stats.lists == 1, "a silent stream is resumed from its resourceVersion, not relisted"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxied.close()
        await proxy.stop()
