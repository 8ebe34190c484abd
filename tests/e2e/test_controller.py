"""The controller end to end: real kube-apiserver, real MariaDB, OpenStack simulator."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from multinic_ctrl.db import Database
from multinic_ctrl.db.migrations import migrate
from tests.dbsupport import PrivateMariaDB
from tests.e2e.harness import Env, config_body, wait_for
from tests.support.control_plane import ControlPlane

pytestmark = pytest.mark.e2e

VM1_MAC, VM2_MAC, VM3_MAC = "fa:16:3e:00:01:01", "fa:16:3e:00:01:02", "fa:16:3e:00:01:03"


def synced(status: dict[str, object]) -> bool:
    return status.get("phase") == "Synced"


async def test_lifecycle_create_edit_noop_delete(env: Env) -> None:
    await env.create(config_body("cfg", ["test-vm-1", "test-vm-2"], env.sim))
    status = await env.wait_status("cfg", synced, "synced")
    assert status["vmsFound"] == 2 and status["interfaces"] == 2
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "CredentialsValid": "True",
        "SubnetFound": "True",
        "AllVMsFound": "True",
        "SecureTransport": "False",  # the simulator speaks plain HTTP: a warning, not a failure
    }
    (row1,) = await env.agent_rows("test-vm-1")
    assert (row1["macaddress"], row1["address"], row1["mtu"], row1["cidr"]) == (
        VM1_MAC,
        "192.168.100.11",
        1450,
        "192.168.100.0/24",
    )
    assert [r["macaddress"] for r in await env.agent_rows("test-vm-2")] == [VM2_MAC]
    assert await env.agent_rows("test-vm-10") == [], "look-alike names must not match"
    obj = await env.get("cfg")
    assert obj is not None and "multinic.example.com/interface-rows" in obj["metadata"]["finalizers"]

    # No-op update (a label): no OpenStack call, rows untouched.
    before = await env.all_interfaces()
    env.sim.request_log.clear()
    await env.patch("cfg", {"metadata": {"labels": {"team": "net"}}})
    await env.wait_status("cfg", synced, "still synced")
    assert env.sim.request_log.count() == 0
    assert await env.all_interfaces() == before

    # Edit vmNames: drop vm-2, add vm-3 → exactly those rows change.
    await env.patch("cfg", {"spec": {"vmNames": ["test-vm-1", "test-vm-3"]}})
    await wait_for(lambda: _has_rows(env, "test-vm-3"), "vm-3 rows")
    after = await env.all_interfaces()
    assert [r for r in after if r["id"] == row1["id"]] == [r for r in before if r["id"] == row1["id"]], (
        "vm-1's row untouched (id, netplan_success, modified_at)"
    )
    assert await env.agent_rows("test-vm-2") == []
    assert [r["macaddress"] for r in await env.agent_rows("test-vm-3")] == [VM3_MAC]

    # Delete → rows gone, finalizer released, object gone.
    await env.delete("cfg")
    await wait_for(lambda: _gone(env, "cfg"), "config deleted")
    assert await env.all_interfaces() == []


async def _has_rows(env: Env, node: str) -> bool:
    return bool(await env.agent_rows(node))


async def _gone(env: Env, name: str) -> bool:
    return await env.get(name) is None


async def test_missing_vm_does_not_block_found_ones(env: Env) -> None:
    await env.create(config_body("cfg", ["test-vm-1", "test-vm-404"], env.sim))
    status = await env.wait_status("cfg", synced, "synced")
    assert status["missingVMs"] == ["test-vm-404"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["AllVMsFound"]["status"] == "False"
    assert "test-vm-404" in conditions["AllVMsFound"]["message"]
    assert len(await env.agent_rows("test-vm-1")) == 1
    await wait_for(lambda: _has_event(env, "cfg", "VMNotFound"), "VMNotFound event")


async def _has_event(env: Env, name: str, reason: str) -> bool:
    return any(e["reason"] == reason for e in await env.events(name))


async def test_missing_subnet_then_recovery(env: Env) -> None:
    await env.create(config_body("cfg", ["test-vm-1"], env.sim, subnet="nope-subnet"))
    status = await env.wait_status("cfg", lambda s: s.get("phase") == "Error", "error")
    assert "subnet 'nope-subnet' not found" in status["message"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["SubnetFound"] == "False"
    assert await env.all_interfaces() == []
    await wait_for(lambda: _has_event(env, "cfg", "SubnetNotFound"), "SubnetNotFound event")
    # Fix it in OpenStack: the slow error retry (2 s here) picks it up without a CR change.
    net = next(iter(env.sim.state.networks.values()))
    env.sim.state.add_subnet("nope-subnet", net.id, "172.16.0.0/24")
    await env.wait_status("cfg", synced, "recovered")


async def test_bad_credentials_then_fixed_secret(env: Env) -> None:
    await env.put_secret("os-creds", {"password": "wrong-password-1"})
    await env.create(config_body("cfg", ["test-vm-1"], env.sim, secret_ref=("os-creds", "password")))
    status = await env.wait_status("cfg", lambda s: s.get("phase") == "Error", "auth error")
    assert "Keystone rejected the credentials of user 'admin'" in status["message"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["CredentialsValid"] == "False"
    obj = await env.get("cfg")
    assert "wrong-password-1" not in str(obj)
    assert all("wrong-password-1" not in str(e) for e in await env.events("cfg"))
    # Rotating the Secret triggers a reconcile through the Secret watch.
    await env.put_secret("os-creds", {"password": "admin"})
    await env.wait_status("cfg", synced, "synced after secret fix")
    assert len(await env.agent_rows("test-vm-1")) == 1
    # Secrets are watched as metadata only: no Secret content is ever held in the controller's cache.
    assert env.service is not None
    cached = [o for i in env.service.secret_informers for o in i.store.objects()]
    assert [o["metadata"]["name"] for o in cached] == ["os-creds"]
    assert all("data" not in o and "stringData" not in o for o in cached)


async def test_configs_sharing_a_secret_read_it_once_per_version(env: Env) -> None:
    """Reconciles reuse what was read of a Secret while its watch shows the same resourceVersion: five configs
    sharing one Secret cost one GET, not five, and a rotation one more (two workers may both miss it)."""
    await env.put_secret("shared-creds", {"password": "admin"})
    service = env.service
    assert service is not None
    key = f"{env.namespace}/shared-creds"
    # Until its watch has seen the Secret, every read is a GET (as it should be): start from a watched Secret.
    await wait_for(lambda: any(key in i.store for i in service.secret_informers), "the Secret watched")
    names = [f"cfg-{i}" for i in range(5)]
    for i, name in enumerate(names):
        await env.create(config_body(name, [f"test-vm-{i % 2 + 1}"], env.sim, secret_ref=("shared-creds", "password")))
    for name in names:
        await env.wait_status(name, synced, f"{name} synced")
    assert service.reconciler is not None
    reader = service.reconciler.d.secrets
    assert reader is not None
    assert reader.gets <= 2, reader.gets
    before = reader.gets
    # A rotation to a wrong password: every config reconciles again (the Secret watch queues them) and fails.
    await env.put_secret("shared-creds", {"password": "wrong-password-2"})
    for name in names:
        await env.wait_status(name, lambda s: s.get("phase") == "Error", f"{name} saw the rotation")
    assert 1 <= reader.gets - before <= 2, reader.gets - before


async def test_database_down_during_reconcile_and_deletion(
    env: Env, tmp_path: Path, control_plane: ControlPlane
) -> None:
    """A real MariaDB of the test's own is stopped mid-flight: nothing is lost, everything converges."""
    await env.stop()
    with PrivateMariaDB.running(tmp_path / "mariadb") as mariadb:
        await migrate(mariadb.settings())
        database = Database(mariadb.settings())
        env.database = database
        env.settings = replace(env.settings, database=mariadb.settings())
        await env.start()
        try:
            await env.create(config_body("cfg", ["test-vm-1"], env.sim))
            await env.wait_status("cfg", synced, "synced")

            await asyncio.to_thread(mariadb.run, "down")
            await env.patch("cfg", {"spec": {"vmNames": ["test-vm-1", "test-vm-2"]}})
            status = await env.wait_status("cfg", lambda s: s.get("reason") == "DatabaseUnavailable", "db error")
            assert "MariaDB" in status["message"] and "multinic-dev" not in str(status)
            code, body = await env.http("GET", "/readyz")
            assert code == 503 and body["failing"] == ["database"]
            await asyncio.to_thread(mariadb.run, "up")
            await env.wait_status("cfg", lambda s: synced(s) and s.get("vmsFound") == 2, "converged", timeout=40)
            assert len(await env.agent_rows("test-vm-2")) == 1

            await asyncio.to_thread(mariadb.run, "down")
            await env.delete("cfg")
            await asyncio.sleep(3)
            obj = await env.get("cfg")
            assert obj is not None and obj["metadata"].get("deletionTimestamp"), "finalizer holds while DB is down"
            await asyncio.to_thread(mariadb.run, "up")
            await wait_for(lambda: _gone(env, "cfg"), "deleted after DB is back", timeout=40)
            assert await env.all_interfaces() == []
        finally:
            await env.stop()
            await database.close()


async def test_ambiguous_subnet_then_recovery(env: Env) -> None:
    await env.create(config_body("cfg", ["test-vm-1"], env.sim))
    await env.wait_status("cfg", synced, "synced")
    rows = await env.all_interfaces()
    # Someone creates a second subnet with the same name in another network: the name no longer decides.
    other_net = env.sim.state.add_network("other-net", mtu=1500)
    twin = env.sim.state.add_subnet("k8s-subnet", other_net.id, "172.31.0.0/24")
    code, _ = await env.http(
        "POST", f"/trigger/{env.namespace}/cfg", headers={"Authorization": "Bearer e2e-token-0123456789"}
    )
    assert code == 202
    status = await env.wait_status("cfg", lambda s: s.get("phase") == "Error", "ambiguous")
    assert status["reason"] == "SubnetAmbiguous"
    assert twin.id in status["message"] and other_net.id in status["message"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["SubnetFound"] == "False"
    assert await env.all_interfaces() == rows, "an ambiguous subnet changes no row"
    await wait_for(lambda: _has_event(env, "cfg", "SubnetAmbiguous"), "SubnetAmbiguous event")
    del env.sim.state.subnets[twin.id]
    await env.wait_status("cfg", synced, "recovered after the twin is gone")  # error retry: 2 s here
    assert await env.all_interfaces() == rows
