"""`python -m multinic_ctrl run` as a separate process, as it runs in a cluster: leader election on,
JSON logs, probes, a reconcile, and a graceful SIGTERM that releases the Lease. Secrets never reach the log."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client

from multinic_ctrl.db import Database
from tests.e2e.harness import GROUP, VERSION, ControllerProcess, config_body, wait_for
from tests.fakes.openstack.fixtures import Simulator
from tests.support.control_plane import ControlPlane

pytestmark = pytest.mark.e2e

OPENSTACK_PASSWORD = "s3cret-keystone-pw-77"


async def _get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status, await resp.json()
    except aiohttp.ClientError as exc:
        return 0, {"error": repr(exc)}


async def test_controller_process_lifecycle(
    control_plane: ControlPlane,
    multinic_crds: list[str],
    namespace: str,
    kube_api: client.ApiClient,
    sim: Simulator,
    tmp_path: Path,
) -> None:
    from tests.dbsupport import fresh_database

    sim.state.add_user("svc-multinic", OPENSTACK_PASSWORD, "Default", ["your-project-id"])
    async with fresh_database() as database:
        await _run(control_plane, namespace, kube_api, sim, database, tmp_path)


async def _run(
    control_plane: ControlPlane,
    namespace: str,
    kube_api: client.ApiClient,
    sim: Simulator,
    database: Database,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "trigger-token"
    token_file.write_text("process-trigger-token-123\n")
    log_path = tmp_path / "controller.log"
    controller = ControllerProcess.start(
        database=database,
        kubeconfig=control_plane.kubeconfig_path,
        namespace=namespace,
        token_file=token_file,
        log_path=log_path,
    )
    proc, probe = controller.proc, controller.probe_port
    try:
        last: dict[str, object] = {}

        async def ready() -> bool:
            nonlocal last
            code, last = await _get_json(f"http://127.0.0.1:{probe}/readyz")
            return code == 200 and last.get("details", {}).get("leadership") == "leader"  # type: ignore[union-attr]

        try:
            await wait_for(ready, "controller ready and leading", timeout=60)
        except AssertionError:
            raise AssertionError(f"controller not ready and leading; last /readyz answer: {last}") from None
        custom = client.CustomObjectsApi(kube_api)
        body = config_body("cfg", ["test-vm-1", "test-vm-2"], sim, password=OPENSTACK_PASSWORD)
        body["spec"]["credentials"]["username"] = "svc-multinic"
        await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "openstackconfigs", body)

        async def synced() -> bool:
            obj = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "openstackconfigs", "cfg")
            return (obj.get("status") or {}).get("phase") == "Synced"

        await wait_for(synced, "config synced by the process", timeout=60)
        code, _ = await _get_json(f"http://127.0.0.1:{probe}/healthz")
        assert code == 200
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{probe}/metrics") as resp:
            metrics = await resp.text()
        assert 'multinic_reconcile_total{result="success",trigger="cr-change"}' in metrics

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
        lease = await client.CoordinationV1Api(kube_api).read_namespaced_lease("multinic-controller", namespace)
        assert not lease.spec.holder_identity, "a graceful stop releases the Lease for an immediate hand-over"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    events = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    names = {e["event"] for e in events}
    assert {"Proceeding with reconcile", "Reconcile completed successfully", "Shutdown requested"} <= names
    assert not any("died" in name for name in names), "a graceful stop is not a crash"
    assert not [e for e in events if e.get("level") == "error"], "no error logged on a clean run"
    for secret in (OPENSTACK_PASSWORD, "process-trigger-token-123", database.settings.password):
        assert secret not in log, "a secret reached the log"
