"""A webhook trigger answered 202 survives the leader's `kill -9` before it reconciled (issue 10, item 5).

Two controller processes with production leader-election timings. The leader is frozen (SIGSTOP) so it cannot
act, the trigger is posted to the standby, the leader is killed with SIGKILL: the standby takes the Lease once
it expires and handles the recorded request - exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio import client

from multinic_ctrl.controller.triggers import HANDLED_FIELD
from tests.dbsupport import fresh_database
from tests.e2e.harness import GROUP, VERSION, config_body, leader_and_standby_processes, wait_for
from tests.fakes.openstack.fixtures import Simulator
from tests.support.control_plane import ControlPlane

pytestmark = pytest.mark.e2e

TOKEN = "durable-trigger-token-0123"


async def test_a_trigger_survives_kill_9_of_the_leader(
    control_plane: ControlPlane,
    multinic_crds: list[str],
    namespace: str,
    kube_api: client.ApiClient,
    sim: Simulator,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    custom = client.CustomObjectsApi(kube_api)

    async def status() -> dict[str, object]:
        obj = await custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "openstackconfigs", "cfg")
        return dict(obj.get("status") or {})

    async with (
        fresh_database() as database,
        leader_and_standby_processes(
            database=database,
            kubeconfig=control_plane.kubeconfig_path,
            namespace=namespace,
            token_file=token_file,
            log_dir=tmp_path,
        ) as (leader, second),
    ):
        await custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "openstackconfigs", config_body("cfg", ["test-vm-1"], sim)
        )

        async def synced() -> bool:
            return (await status()).get("phase") == "Synced"

        await wait_for(synced, "synced by the leader", timeout=60)
        await asyncio.sleep(1)
        before = sim.request_log.count("network.networks")

        os.kill(leader.proc.pid, signal.SIGSTOP)  # the leader can no longer act (nor renew its Lease)
        url = f"{second.url}/trigger/{namespace}/cfg"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp,
        ):
            assert resp.status == 202
            request_id = (await resp.json())["request"]
        leader.kill()  # kill -9 before it reconciled

        async def handled() -> bool:
            return (await status()).get(HANDLED_FIELD) == request_id

        await wait_for(handled, "the new leader handled the recorded request", timeout=60)
        assert await second.leadership() == "leader"
        await asyncio.sleep(2)
        assert sim.request_log.count("network.networks") == before + 1, "handled exactly once"
        second.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.proc.wait, 30) == 0
