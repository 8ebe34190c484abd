"""The controller end to end against REAL Keystone/Nova/Neutron: CR → rows → status → delete.

Real kube-apiserver + etcd, a fresh real MariaDB database, and the OpenStack testbed
(`scripts/openstack-testbed up && scripts/openstack-testbed seed`). MACs are whatever Neutron assigned, so
the expected rows are read back from Neutron with the client first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes_asyncio import client

from multinic_ctrl.db import DesiredState, InterfaceRow, NodeRow, SubnetRow
from multinic_ctrl.openstack import Credentials
from tests.dbsupport import fresh_database
from tests.e2e.harness import GROUP, VERSION, Env, controller_env, wait_for
from tests.support.control_plane import ControlPlane

from .conftest import CELLS_PROJECT, K8S_CIDR, K8S_IPS, make_client, real_down_cell

pytestmark = [pytest.mark.openstack_real, pytest.mark.e2e]


@pytest.fixture
def real_creds(real_env: dict[str, str]) -> Credentials:
    return Credentials(
        auth_url=real_env["OS_AUTH_URL"].removesuffix("/v3"),
        username=real_env["OS_USERNAME"],
        password=real_env["OS_PASSWORD"],
        user_domain_name=real_env.get("OS_USER_DOMAIN_NAME", "Default"),
        project_id=real_env["OS_PROJECT_ID"],
    )


@pytest.fixture
async def real_env_controller(
    control_plane: ControlPlane,
    multinic_crds: list[str],
    namespace: str,
    kube_api: client.ApiClient,
    real_creds: Credentials,
) -> AsyncIterator[Env]:
    # The harness only keeps the OpenStack handle for tests to use; ours carries the real auth URL.
    handle: Any = SimpleNamespace(auth_url=real_creds.auth_url)
    async with (
        fresh_database() as database,
        controller_env(namespace, kube_api, handle, database, str(control_plane.kubeconfig_path)) as environment,
    ):
        yield environment


def body(name: str, vms: list[str], creds: Credentials, subnet: str = "k8s-subnet") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OpenstackConfig",
        "metadata": {"name": name},
        "spec": {
            "vmNames": vms,
            "subnetName": subnet,
            "credentials": {
                "authURL": creds.auth_url,
                "username": creds.username,
                "password": creds.password,
                "projectID": creds.project_id,
                "domainName": creds.user_domain_name,
            },
        },
    }


async def test_lifecycle_against_real_openstack(real_env_controller: Env, real_creds: Credentials) -> None:
    env = real_env_controller
    vms = ["test-vm-1", "test-vm-2", "test-vm-3"]
    oclient, _ = make_client()
    try:
        truth = await oclient.observe(real_creds, vms, "k8s-subnet")
    finally:
        await oclient.close()
    names = {s.id: s.name for s in truth.servers}
    expected = {(names[p.device_id], p.mac, p.ip) for p in truth.ports}
    assert {ip for _, _, ip in expected} == {ip for vm in vms for ip in K8S_IPS[vm]}

    await env.create(body("real-cfg", vms, real_creds))
    status = await env.wait_status("real-cfg", lambda s: s.get("phase") == "Synced", "synced", timeout=60)
    assert status["vmsFound"] == 3
    assert status["interfaces"] == len(expected) == 4  # test-vm-3 has a hot-attached second port

    rows = {vm: await env.agent_rows(vm) for vm in vms}
    got = {(vm, r["macaddress"], r["address"]) for vm, rs in rows.items() for r in rs}
    assert got == expected
    for rs in rows.values():
        for r in rs:
            assert (r["mtu"], r["cidr"]) == (1450, K8S_CIDR)
    assert await env.agent_rows("test-vm-10") == [], "look-alike names must not match"
    assert await env.agent_rows("test-vm-1.backup") == []

    await env.delete("real-cfg")

    async def gone() -> bool:
        return await env.get("real-cfg") is None

    await wait_for(gone, "config deleted", timeout=60)
    assert await env.all_interfaces() == []


async def test_rows_of_a_vm_in_an_unreachable_cell_are_kept(
    real_env_controller: Env, real_creds: Credentials, real_env: dict[str, str]
) -> None:
    """Issue 11, item 2, end to end on real components: while the VM's Nova cell does not answer, Nova's
    answer cannot name it; its rows stay byte for byte (the agent keeps its NIC) and the status says "state
    unknown". Once Nova answers again without it, the next reconcile removes them."""
    env = real_env_controller
    oclient, _ = make_client()
    try:
        token = await oclient.tokens.get(
            replace(real_creds, project_id=None, project_name=CELLS_PROJECT, project_domain_name="Default")
        )
        creds = replace(real_creds, project_id=token.project_id)
        subnet = (await oclient.observe(creds, [], "shared-subnet")).subnet
    finally:
        await oclient.close()

    async with real_down_cell(real_env) as server_id:
        await env.create(body("cells-cfg", ["cell-vm"], creds, subnet="shared-subnet"))
        await env.wait_status("cells-cfg", lambda s: s.get("phase") == "Synced", "synced", timeout=60)
        # The VM had been seen (and its NIC configured by the agent) before its cell stopped answering.
        await env.repo.apply(
            env.namespace,
            "cells-cfg",
            DesiredState(
                subnets=(SubnetRow(subnet.id, subnet.name, subnet.cidr, subnet.network_id),),
                nodes=(NodeRow(server_id, "cell-vm"),),
                interfaces=(
                    InterfaceRow(
                        "port-of-cell-vm",
                        subnet.id,
                        "fa:16:3e:c0:11:01",
                        "192.168.120.50",
                        subnet.mtu,
                        server_id,
                        "cell-vm",
                    ),
                ),
            ),
        )
        (row,) = await env.agent_rows("cell-vm")
        async with env.database.transaction("test") as cur:  # the agent's only write
            await cur.execute(
                "UPDATE multi_interface SET netplan_success=%s, modified_at=NOW() WHERE id=%s", (1, row["id"])
            )
        (row,) = await env.agent_rows("cell-vm")

        await env.patch("cells-cfg", {"spec": {"vmNames": ["cell-vm", "cell-vm-b"]}})  # a reconcile, now
        status = await env.wait_status(
            "cells-cfg",
            lambda s: s.get("phase") == "Synced" and s.get("observedGeneration") == 2,
            "synced with the new spec",
            timeout=60,
        )
        assert await env.agent_rows("cell-vm") == [row]  # same id, same netplan_success: nothing re-applied
        vms = {v["name"]: v for v in status["vms"]}
        assert vms["cell-vm"]["status"] == "UNKNOWN" and "rows are kept" in vms["cell-vm"]["message"]
        found = {c["type"]: c for c in status["conditions"]}["AllVMsFound"]
        assert (found["status"], found["reason"]) == ("Unknown", "VMStateUnknown")
        assert "cell-vm" in found["message"]

    # The cell is gone from Nova and the server with it: now its absence is proof, and the rows go.
    await env.patch("cells-cfg", {"spec": {"vmNames": ["cell-vm"]}})
    status = await env.wait_status(
        "cells-cfg",
        lambda s: s.get("phase") == "Synced" and s.get("observedGeneration") == 3,
        "synced without the cell",
        timeout=60,
    )
    assert await env.agent_rows("cell-vm") == []
    found = {c["type"]: c for c in status["conditions"]}["AllVMsFound"]
    assert (found["status"], found["reason"]) == ("False", "VMsMissing")

    await env.delete("cells-cfg")

    async def gone() -> bool:
        return await env.get("cells-cfg") is None

    await wait_for(gone, "config deleted", timeout=60)
