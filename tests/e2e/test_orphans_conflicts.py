"""Rows never outlive their config (issue 11, item 7) and port conflicts heal (item 8), on the real apiserver
and MariaDB."""

from __future__ import annotations

import pytest

from multinic_ctrl.metrics import ORPHANS_COLLECTED
from tests.e2e.harness import Env, config_body, wait_for

pytestmark = pytest.mark.e2e


async def test_rows_of_a_config_deleted_while_the_controller_was_gone_are_collected(env: Env) -> None:
    await env.create(config_body("cfg", ["test-vm-1", "test-vm-2"], env.sim))
    await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced")
    assert len(await env.all_interfaces()) == 2
    await env.stop()
    # Deleted behind the controller's back: the finalizer stripped by hand, then the object gone.
    await env.patch("cfg", {"metadata": {"finalizers": None}})
    await env.delete("cfg")
    await wait_for(lambda: _gone(env), "config gone")
    assert len(await env.all_interfaces()) == 2, "the premise: its rows are still there"

    before = ORPHANS_COLLECTED._value.get()
    await env.start()
    await wait_for(lambda: _no_rows(env), "orphaned rows removed after the caches synced", timeout=20)
    assert await env.repo.state_of(env.namespace, "cfg") is None
    assert ORPHANS_COLLECTED._value.get() == before + 1


async def test_rows_of_configs_in_unwatched_namespaces_are_left_alone(env: Env) -> None:
    from multinic_ctrl.controller.desired import desired_rows
    from multinic_ctrl.openstack import Observation, Port, Server, Subnet

    observation = Observation(
        Subnet("s1", "k8s-subnet", "10.0.0.0/24", "n1", 1500),
        (Server("srv-1", "other-vm", "ACTIVE"),),
        (),
        (Port("p-other", "fa:16:3e:aa:bb:cc", "10.0.0.5", "srv-1", "n1"),),
    )
    await env.repo.apply("someone-elses-namespace", "cfg", desired_rows(observation), spec_hash="f" * 64)
    await env.stop()
    await env.start()
    await env.create(config_body("mine", ["test-vm-1"], env.sim))
    await env.wait_status("mine", lambda s: s.get("phase") == "Synced", "synced")
    assert [r["port_id"] for r in await env.all_interfaces() if r["cr_namespace"] != env.namespace] == ["p-other"]


async def test_a_port_conflict_heals_when_the_owner_lets_go(env: Env) -> None:
    await env.create(config_body("first", ["test-vm-1"], env.sim))
    await env.wait_status("first", lambda s: s.get("phase") == "Synced", "first owns the port")
    await env.create(config_body("second", ["test-vm-1", "test-vm-2"], env.sim))
    status = await env.wait_status("second", lambda s: s.get("phase") == "Synced", "second synced")
    (vm1,) = [vm for vm in status["vms"] if vm["name"] == "test-vm-1"]
    assert vm1["interfaces"][0]["ownedBy"] == f"{env.namespace}/first"
    assert await _owner(env, "test-vm-1", "first")

    env.sim.request_log.clear()
    await env.patch("first", {"spec": {"vmNames": ["test-vm-3"]}})  # drops the VM: its port row goes
    await wait_for(lambda: _owner(env, "test-vm-1", "second"), "second took the port over", timeout=20)
    # The rows are committed before the status is written: wait for the status to follow.
    status = await env.wait_status("second", lambda s: "already managed" not in str(s.get("vms")), "conflict gone")
    (vm1,) = [vm for vm in status["vms"] if vm["name"] == "test-vm-1"]
    assert "ownedBy" not in vm1["interfaces"][0] and "conflict" not in vm1["interfaces"][0]

    await env.create(config_body("third", ["test-vm-2"], env.sim))
    await env.wait_status("third", lambda s: s.get("phase") == "Synced", "third synced (conflict on vm-2)")
    await env.delete("second")
    await wait_for(lambda: _owner(env, "test-vm-2", "third"), "third took vm-2 over after second was deleted")


async def _owner(env: Env, node: str, name: str) -> bool:
    return [r["cr_name"] for r in await env.all_interfaces() if r["attached_node_name"] == node] == [name]


async def _gone(env: Env) -> bool:
    return await env.get("cfg") is None


async def _no_rows(env: Env) -> bool:
    return await env.all_interfaces() == []
