"""A deposed leader must not write (issue 11, item 6): two controller processes, production lease timings.

The leader is frozen (SIGSTOP) in the middle of a reconcile, holding an OpenStack view in memory. It stays
frozen past the lease; the other replica takes over, claims a new database term and writes a newer view
(a NIC hot-attached meanwhile). Then the old leader is thawed (SIGCONT): its in-flight write is refused and
the rows stay the new leader's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from tests.dbsupport import fresh_database
from tests.e2e.harness import GROUP, VERSION, ControllerProcess, config_body, leader_and_standby_processes, wait_for
from tests.fakes.openstack.fixtures import Simulator
from tests.support.control_plane import ControlPlane

pytestmark = pytest.mark.e2e

HOT_ATTACHED_MAC = "fa:16:3e:77:00:02"


async def test_a_deposed_leaders_in_flight_write_is_refused(
    control_plane: ControlPlane,
    multinic_crds: list[str],
    namespace: str,
    kube_api: client.ApiClient,
    sim: Simulator,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("fencing-token-0123456789")
    custom = client.CustomObjectsApi(kube_api)

    async with fresh_database() as database:

        async def macs_of(node: str) -> list[str]:
            async with database.transaction("test") as cur:
                await cur.execute(
                    "SELECT macaddress FROM multi_interface WHERE attached_node_name = %s ORDER BY macaddress", (node,)
                )
                return [row["macaddress"] for row in await cur.fetchall()]

        async with leader_and_standby_processes(
            database=database,
            kubeconfig=control_plane.kubeconfig_path,
            namespace=namespace,
            token_file=token_file,
            log_dir=tmp_path,
        ) as (old, successor):
            await custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "openstackconfigs", config_body("cfg", ["test-vm-1"], sim)
            )
            await wait_for(lambda: _macs(macs_of, "test-vm-1", 1), "synced by the first leader", timeout=60)

            # The old leader starts a reconcile and is frozen with the OpenStack answer for vm-2 in hand.
            sim.faults.set_latency("network.networks", 3.0)  # the last call of a reconcile: the view is read
            await custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "openstackconfigs",
                "cfg",
                {"spec": {"vmNames": ["test-vm-1", "test-vm-2"]}},
                _content_type="application/merge-patch+json",
            )
            await wait_for(lambda: sim.request_log.count("network.ports") >= 2, "old leader read the ports")
            os.kill(old.proc.pid, signal.SIGSTOP)

            # Meanwhile a NIC is hot-attached to vm-2: only the new leader can see it.
            vm2 = sim.state.find_server("test-vm-2")
            subnet = sim.state.find_subnet("k8s-subnet")
            sim.state.add_port(subnet.id, "192.168.100.99", vm2.id, HOT_ATTACHED_MAC)
            await wait_for(lambda: _is(successor, "leader"), "the standby took over the expired lease", timeout=45)
            await wait_for(lambda: _macs(macs_of, "test-vm-2", 2), "the new leader wrote its view", timeout=30)
            newest = await macs_of("test-vm-2")
            assert HOT_ATTACHED_MAC in newest

            os.kill(old.proc.pid, signal.SIGCONT)  # the old leader resumes its in-flight reconcile
            await asyncio.sleep(6)
            assert await macs_of("test-vm-2") == newest, "the deposed leader's stale view was not written"
            log = [json.loads(line) for line in old.log_path.read_text().splitlines() if line.startswith("{")]
            # Whichever comes first on waking: its lease check (the renew deadline has passed, so the work is
            # cancelled) or the write's own guards (lease margin, then the database term) - never the write.
            stopped = [
                e
                for e in log
                if e.get("event") == "Leadership lost; workers stopped."
                or "Fenced" in json.dumps(e)
                or "not writing" in json.dumps(e)
            ]
            assert stopped, "the old leader says why it did not write"
            assert await old.leadership() in ("standby", None)


async def _macs(macs_of: object, node: str, count: int) -> bool:
    assert callable(macs_of)
    return len(await macs_of(node)) == count


async def _is(process: ControllerProcess, role: str) -> bool:
    return await process.leadership() == role
