"""OpenStack calls per reconcile do not grow with the number of VMs (warm token)."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Env, config_body

pytestmark = pytest.mark.e2e


def add_vms(env: Env, count: int) -> list[str]:
    subnet = env.sim.state.find_subnet("k8s-subnet")
    names = []
    for i in range(count):
        name = f"scale-node-{i:03d}"
        server = env.sim.state.add_server(name)
        env.sim.state.add_port(subnet.id, f"192.168.100.{120 + i}", device_id=server.id)  # inside the /24
        names.append(name)
    return names


async def test_calls_per_reconcile_constant_for_1_10_100_vms(env: Env) -> None:
    names = add_vms(env, 111)
    counts: dict[int, dict[str, int]] = {}
    start = 0
    for size in (1, 10, 100):
        # Disjoint VM sets: a port already owned by another config would be reported as a conflict.
        chosen, start = names[start : start + size], start + size
        env.sim.request_log.clear()
        await env.create(config_body(f"scale-{size}", chosen, env.sim))
        status = await env.wait_status(f"scale-{size}", lambda s: s.get("phase") == "Synced", "synced")
        assert status["vmsFound"] == size and status["interfaces"] == size
        counts[size] = dict(env.sim.request_log.counts())
        counts[size].pop("identity.tokens", None)  # one per process, on the first reconcile only
    print("\nOpenStack calls per reconcile (warm token):", {k: sum(v.values()) for k, v in counts.items()})
    assert (
        counts[1]
        == counts[10]
        == counts[100]
        == {"network.subnets": 1, "compute.servers": 1, "network.ports": 1, "network.networks": 1}
    )
