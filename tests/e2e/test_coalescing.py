"""Configs of one project share OpenStack observations (issue 15 items 1-2), on the real apiserver and MariaDB.

Counted in observations: each one asks for its networks' MTU exactly once (`network.networks`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.e2e.harness import GROUP, VERSION, Env, config_body, wait_for

pytestmark = pytest.mark.e2e

DEMO = "8f0c3b1f5a2e4f6c9d7e1a2b3c4d5e6f"  # the default seed's second project (user demo)
TOKEN = {"Authorization": "Bearer e2e-token-0123456789"}


def observations(env: Env) -> int:
    return env.sim.request_log.count("network.networks")


def add_world(env: Env, prefix: str, count: int, octet: int, project: str | None = None) -> dict[str, str]:
    """`count` servers `prefix-NNN`, each with one port on `prefix-subnet`: name -> port IP."""
    state = env.sim.state
    subnet = state.add_subnet(
        f"{prefix}-subnet", state.add_network(f"{prefix}-net", 1450, project_id=project).id, f"10.{octet}.0.0/16"
    )
    ips = {}
    for i in range(count):
        server = state.add_server(f"{prefix}-{i:03d}", project_id=project)
        ip = f"10.{octet}.{i // 250}.{i % 250 + 1}"
        state.add_port(subnet.id, ip, server.id)
        ips[server.name] = ip
    return ips


def body(env: Env, name: str, vms: list[str], subnet: str, *, demo: bool = False) -> dict[str, Any]:
    obj = config_body(name, vms, env.sim, subnet=subnet)
    if demo:
        obj["spec"]["credentials"] |= {"username": "demo", "password": "demo-secret", "projectID": DEMO}
    return obj


def vms_of(k: int, prefix: str, per: int = 3) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(k * per, (k + 1) * per)]


async def all_synced(env: Env, names: list[str]) -> bool:
    found = await env.custom.list_namespaced_custom_object(GROUP, VERSION, env.namespace, "openstackconfigs")
    phases = {o["metadata"]["name"]: (o.get("status") or {}).get("phase") for o in found["items"]}
    return all(phases.get(n) == "Synced" for n in names)


async def rows_by_config(env: Env) -> dict[str, set[tuple[str, str]]]:
    rows: dict[str, set[tuple[str, str]]] = {}
    for r in await env.all_interfaces():
        rows.setdefault(r["cr_name"], set()).add((r["attached_node_name"], r["address"]))
    return rows


async def test_a_backlog_of_one_project_is_served_by_few_observations(env: Env) -> None:
    ips = add_world(env, "burst", 120, 50)
    await env.stop()
    # A cold start on an existing cluster: the configs exist before the controller starts; one has a subnet
    # nobody knows, which must fail it alone.
    names = [f"cfg-{k:02d}" for k in range(40)]
    for k, name in enumerate(names):
        await env.create(body(env, name, vms_of(k, "burst"), "burst-subnet"))
    await env.create(body(env, "lost", ["burst-000"], "no-such-subnet"))
    env.sim.request_log.clear()
    await env.start()
    await wait_for(lambda: all_synced(env, names), "all 40 configs synced", timeout=60)
    assert observations(env) <= 3, env.sim.request_log.counts()
    rows = await rows_by_config(env)
    for k, name in enumerate(names):
        assert rows[name] == {(vm, ips[vm]) for vm in vms_of(k, "burst")}
    lost = await env.wait_status("lost", lambda s: s.get("phase") == "Error", "the unknown subnet fails its config")
    assert lost["reason"] == "SubnetNotFound" and "lost" not in rows


async def test_a_burst_of_new_configs_shares_observations(env: Env) -> None:
    add_world(env, "wave", 90, 51)
    env.sim.request_log.clear()
    names = [f"wave-{k:02d}" for k in range(30)]
    await asyncio.gather(*(env.create(body(env, n, vms_of(k, "wave"), "wave-subnet")) for k, n in enumerate(names)))
    await wait_for(lambda: all_synced(env, names), "all 30 configs synced", timeout=60)
    assert observations(env) <= 10, env.sim.request_log.counts()  # one per config without coalescing: 30
    assert sum(len(v) for v in (await rows_by_config(env)).values()) == 90


async def test_resync_costs_one_observation_per_project_and_round(env: Env) -> None:
    await env.stop()
    await env.start(resync_seconds=2.0)
    own = add_world(env, "own", 40, 52)
    demo = add_world(env, "demo", 40, 53, project=DEMO)
    names = [f"own-{k:02d}" for k in range(20)] + [f"demo-{k:02d}" for k in range(20)]
    for k in range(20):
        await env.create(body(env, f"own-{k:02d}", vms_of(k, "own", 2), "own-subnet"))
        await env.create(body(env, f"demo-{k:02d}", vms_of(k, "demo", 2), "demo-subnet", demo=True))
    await wait_for(lambda: all_synced(env, names), "all 40 configs synced", timeout=60)
    rows = await env.all_interfaces()
    assert len(rows) == 80 and {r["address"] for r in rows} == set(own.values()) | set(demo.values())
    await asyncio.sleep(2.5)  # let creation-time syncs settle onto the slots
    env.sim.request_log.clear()
    await asyncio.sleep(6.0)  # three rounds of 2 s
    # 40 configs resyncing every 2 s would be 120 observations; per project and round it is 2 x 3 (one round
    # may straddle the start or end of the measurement).
    assert 4 <= observations(env) <= 8, env.sim.request_log.counts()
    assert await env.all_interfaces() == rows  # resyncs leave unchanged rows alone (ids, netplan_success)


async def set_policy(env: Env, trigger: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MultiNicOperator",
        "metadata": {"name": "policy"},
        "spec": {"reconcileTrigger": trigger},
    }
    try:
        await env.custom.create_namespaced_custom_object(GROUP, VERSION, env.namespace, "multinicoperators", body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        await env.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            env.namespace,
            "multinicoperators",
            "policy",
            {"spec": {"reconcileTrigger": trigger}},
            _content_type="application/merge-patch+json",
        )


def ports_query_devices(env: Env) -> list[set[str]]:
    return [{v for k, v in r.query if k == "device_id"} for r in env.sim.request_log.for_endpoint("network.ports")]


@pytest.mark.parametrize("mode", ["manual", "webhook"])
async def test_manual_and_webhook_configs_are_never_observed_along(env: Env, mode: str) -> None:
    add_world(env, "calm", 60, 54)
    await env.stop()
    await set_policy(env, {"mode": mode, "immediateOnCRChange": True})
    await env.start(trigger_source=(env.namespace, "policy"), resync_seconds=1.0)
    await wait_for(lambda: env.service is not None and env.service.triggers.policy.mode.value == mode, "policy")
    names = [f"calm-{k:02d}" for k in range(20)]
    for k, name in enumerate(names):
        await env.create(body(env, name, vms_of(k, "calm"), "calm-subnet"))
    await wait_for(lambda: all_synced(env, names), "all synced on creation", timeout=60)
    await asyncio.sleep(2.5)  # resync periods of immediate mode: nothing is due in these modes
    env.sim.request_log.clear()
    wanted = {env.sim.state.find_server(vm).id for vm in vms_of(7, "calm")}
    if mode == "manual":
        await env.patch("calm-07", {"spec": {"subnetName": "calm-subnet", "vmNames": vms_of(7, "calm")[::-1]}})
    else:
        code, _ = await env.http("POST", f"/trigger/{env.namespace}/calm-07", headers=TOKEN)
        assert code == 202
    await wait_for(lambda: observations(env) == 1, "one observation")
    await asyncio.sleep(2.5)
    assert observations(env) == 1
    # It asked for calm-07's servers only: none of the 19 idle configs was taken along.
    assert ports_query_devices(env) == [wanted]


async def test_resyncs_write_only_what_changed(env: Env) -> None:
    await env.stop()
    await env.start(resync_seconds=2.0)
    add_world(env, "hot", 20, 55)
    names = [f"hot-{k:02d}" for k in range(10)]
    for k, name in enumerate(names):
        await env.create(body(env, name, vms_of(k, "hot", 2), "hot-subnet"))
    await wait_for(lambda: all_synced(env, names), "all synced", timeout=60)
    await asyncio.sleep(2.5)  # onto the slots
    synced_at = {n: (await env.status(n))["lastSyncTime"] for n in names}
    rows = await env.all_interfaces()
    env.sim.request_log.clear()
    await asyncio.sleep(4.5)
    assert observations(env) >= 2  # OpenStack was read every round ...
    assert await env.all_interfaces() == rows  # ... and nothing was written: rows (modified_at included) ...
    assert {n: (await env.status(n))["lastSyncTime"] for n in names} == synced_at  # ... nor status
    # A NIC hot-attached in OpenStack reaches its rows at the next round.
    server = env.sim.state.find_server("hot-003")
    env.sim.state.add_port(env.sim.state.find_subnet("hot-subnet").id, "10.55.9.9", server.id)
    await wait_for(lambda: _has_address(env, "hot-01", "10.55.9.9"), "the hot-attached NIC has its row", timeout=10)
    status = await env.wait_status("hot-01", lambda s: s.get("interfaces") == 3, "status follows")
    assert status["lastSyncTime"] != synced_at["hot-01"]
    assert (await env.status("hot-02"))["lastSyncTime"] == synced_at["hot-02"]


async def _has_address(env: Env, config: str, address: str) -> bool:
    return any(r["cr_name"] == config and r["address"] == address for r in await env.all_interfaces())
