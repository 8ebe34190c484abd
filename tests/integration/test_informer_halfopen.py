"""A half-open watch stream (peer stops sending, connection stays up) is detected by the inactivity watchdog.

A loopback TCP proxy (`FreezableProxy`, in test_informer.py) sits between the informer and the apiserver;
`freeze()` makes every existing connection stop forwarding in both directions without closing it - what a NAT or
load balancer that silently dropped its connection state looks like from the client. Without the watchdog the
informer would wait forever.
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
from tests.support.control_plane import ControlPlane

from .test_informer import Events, FreezableProxy, configmap, eventually, server_state, store_state

pytestmark = pytest.mark.integration


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
