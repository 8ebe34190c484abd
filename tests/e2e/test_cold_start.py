"""A controller starting on an existing cluster reads every config's stored state in one query (issue 15 item 0:
`OpenstackConfigReconciler.prime`), and decides exactly as it would with one read per config.

Real apiserver, MariaDB and simulator; the controller in-process. Counted from its own metrics: the database
operations `list_states` (the one read at start) and `get_state` (a read per config, what it did before).
"""

from __future__ import annotations

import pytest

from multinic_ctrl.metrics import REGISTRY
from tests.e2e.harness import Env, config_body, wait_for
from tests.e2e.test_coalescing import add_world, all_synced, rows_by_config, vms_of
from tests.support.metrics import metric_sum

pytestmark = pytest.mark.e2e


def db_reads(operation: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "multinic_database_operation_duration_seconds_count", {"operation": operation, "result": "success"}
        )
        or 0.0
    )


def reconciles() -> float:
    return metric_sum("multinic_reconcile", "multinic_reconcile_total")


async def test_a_restart_reads_all_stored_state_at_once_and_decides_as_before(env: Env) -> None:
    ips = add_world(env, "cold", 33, 60)
    names = [f"cfg-{k:02d}" for k in range(10)]
    for k, name in enumerate(names):
        await env.create(config_body(name, vms_of(k, "cold"), env.sim, subnet="cold-subnet"))
    await wait_for(lambda: all_synced(env, names), "10 configs synced", timeout=60)
    await env.stop()

    # While the controller is down: one config is added, one changes its spec.
    await env.create(config_body("cfg-new", vms_of(10, "cold"), env.sim, subnet="cold-subnet"))
    await env.patch("cfg-03", {"spec": {"vmNames": vms_of(3, "cold")[:2]}})
    env.sim.request_log.clear()
    reads_before, primes_before, done_before = db_reads("get_state"), db_reads("list_states"), reconciles()
    # Resyncs an hour apart: a 30 s slot falling inside this test would be a legitimate extra observation.
    await env.start(resync_seconds=3600.0)
    await wait_for(lambda: reconciles() >= done_before + 11, "every config reconciled once after the restart")
    await wait_for(lambda: all_synced(env, [*names, "cfg-new"]), "all configs synced", timeout=60)

    assert db_reads("list_states") == primes_before + 1
    assert db_reads("get_state") == reads_before, "no per-config state read on a cold start"
    # The stored state was used, not ignored: only the new and the changed config called OpenStack (one
    # coalesced observation, or two if they did not meet), the 9 unchanged ones made no call.
    assert 1 <= env.sim.request_log.count("network.networks") <= 2, env.sim.request_log.counts()
    rows = await rows_by_config(env)
    assert rows["cfg-new"] == {(vm, ips[vm]) for vm in vms_of(10, "cold")}
    assert rows["cfg-03"] == {(vm, ips[vm]) for vm in vms_of(3, "cold")[:2]}
    for k, name in enumerate(names):
        if name != "cfg-03":
            assert rows[name] == {(vm, ips[vm]) for vm in vms_of(k, "cold")}
