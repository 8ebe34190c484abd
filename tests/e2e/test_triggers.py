"""Trigger modes end to end, counted in OpenStack calls made to the simulator.

The policy comes from a MultiNicOperator's spec.reconcileTrigger, watched live: changing it applies
without restarting the controller. One observe is 4 OpenStack calls (subnets, servers, ports, network)
with a warm token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.e2e.harness import GROUP, VERSION, Env, config_body, wait_for

pytestmark = pytest.mark.e2e

OBSERVE_CALLS = ("network.subnets", "compute.servers", "network.ports", "network.networks")
TOKEN = {"Authorization": "Bearer e2e-token-0123456789"}


def observes(env: Env) -> int:
    """Complete observations seen by the simulator (each asks for the network MTU exactly once)."""
    return env.sim.request_log.count("network.networks")


async def set_policy(env: Env, trigger: dict[str, Any]) -> None:
    """Create the MultiNicOperator holding the policy, or change its trigger (the controller watches it)."""
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


async def wait_policy(env: Env, trigger: dict[str, Any]) -> None:
    mode = trigger.get("mode", "immediate")
    await wait_for(
        lambda: env.service is not None and env.service.triggers.policy.mode.value == mode, f"policy {mode} applied"
    )


async def restart_with_policy(env: Env, trigger: dict[str, Any], **controller: Any) -> None:
    await env.stop()
    await set_policy(env, trigger)
    await env.start(trigger_source=(env.namespace, "policy"), **controller)
    await wait_policy(env, trigger)


def synced(status: dict[str, Any]) -> bool:
    return status.get("phase") == "Synced"


async def test_manual_mode_calls_only_on_cr_changes(env: Env) -> None:
    await restart_with_policy(env, {"mode": "manual"}, resync_seconds=1.0)
    await env.create(config_body("cfg", ["test-vm-1"], env.sim))
    await env.wait_status("cfg", synced, "synced on create")
    assert observes(env) == 1
    await asyncio.sleep(3)  # three resync periods of immediate mode: manual must not call
    assert observes(env) == 1
    # A controller restart is no CR change: the spec hash key is stable, so manual mode stays silent.
    await env.stop()
    await env.start(trigger_source=(env.namespace, "policy"), resync_seconds=1.0)
    await wait_policy(env, {"mode": "manual"})
    await asyncio.sleep(2)
    assert observes(env) == 1
    await env.patch("cfg", {"spec": {"vmNames": ["test-vm-1", "test-vm-2"]}})
    await wait_for(lambda: observes(env) == 2, "one observe for the spec change")
    await env.wait_status("cfg", lambda s: s.get("vmsFound") == 2, "two VMs")
    await asyncio.sleep(2)
    assert observes(env) == 2


async def test_immediate_mode_resync_leaves_rows_untouched(env: Env) -> None:
    await env.stop()
    await env.start(resync_seconds=1.0)
    await env.create(config_body("cfg", ["test-vm-1", "test-vm-2"], env.sim))
    await env.wait_status("cfg", synced, "synced")
    rows = await env.all_interfaces()
    await wait_for(lambda: observes(env) >= 3, "two periodic resyncs", timeout=15)
    assert await env.all_interfaces() == rows


async def test_scheduled_mode_waits_for_interval(env: Env) -> None:
    await restart_with_policy(env, {"mode": "scheduled", "interval": "10s", "immediateOnCRChange": False})
    created = dt.datetime.now(dt.UTC)
    await env.create(config_body("cfg", ["test-vm-1"], env.sim))
    status = await env.wait_status("cfg", lambda s: s.get("phase") == "Pending", "pending")
    assert "waiting for the next scheduled reconcile" in status["message"]
    assert observes(env) == 0
    status = await env.wait_status("cfg", synced, "first scheduled sync", timeout=20)
    first = dt.datetime.fromisoformat(status["lastSyncTime"].replace("Z", "+00:00"))
    assert first - created >= dt.timedelta(seconds=8), "the CR change waited for its slot"
    assert observes(env) == 1
    status = await env.wait_status(
        "cfg", lambda s: s.get("lastSyncTime") != status["lastSyncTime"], "second scheduled sync", timeout=20
    )
    second = dt.datetime.fromisoformat(status["lastSyncTime"].replace("Z", "+00:00"))
    assert dt.timedelta(seconds=9) <= second - first <= dt.timedelta(seconds=13)
    assert observes(env) == 2


async def test_scheduled_with_immediate_on_cr_change_and_live_mode_switch(env: Env) -> None:
    await restart_with_policy(env, {"mode": "scheduled", "interval": "1h", "immediateOnCRChange": True})
    await env.create(config_body("cfg", ["test-vm-1"], env.sim))
    await env.wait_status("cfg", synced, "synced at once")
    assert observes(env) == 1
    # Switch to webhook mode without a restart; a spec change now waits for a webhook call.
    await set_policy(env, {"mode": "webhook", "immediateOnCRChange": False})
    await wait_policy(env, {"mode": "webhook"})
    await env.patch("cfg", {"spec": {"vmNames": ["test-vm-2"]}})
    await env.wait_status("cfg", lambda s: s.get("phase") == "Pending", "pending for webhook")
    assert observes(env) == 1
    code, body = await env.http("POST", f"/trigger/{env.namespace}/cfg", headers=TOKEN)
    assert (code, body["enqueued"]) == (202, [f"{env.namespace}/cfg"])
    assert set(body) == {"enqueued", "request"} and body["request"]
    await env.wait_status(
        "cfg", lambda s: synced(s) and s.get("vms", [{}])[0].get("name") == "test-vm-2", "synced by webhook"
    )
    assert observes(env) == 2


async def test_webhook_mode_one_observe_per_post(env: Env) -> None:
    await restart_with_policy(env, {"mode": "webhook"}, resync_seconds=1.0)
    await env.create(config_body("cfg", ["test-vm-1"], env.sim))
    await env.create(config_body("other", ["test-vm-2"], env.sim))
    await env.wait_status("cfg", lambda s: s.get("phase") == "Pending", "pending")
    await asyncio.sleep(2)
    assert observes(env) == 0
    for expected in (1, 2, 3):
        code, _ = await env.http("POST", f"/trigger/{env.namespace}/cfg", headers=TOKEN)
        assert code == 202
        await wait_for(lambda n=expected: observes(env) == n, f"observe #{expected}")  # type: ignore[misc]
        await asyncio.sleep(0.5)
        assert observes(env) == expected
    code, body = await env.http("POST", "/trigger", headers=TOKEN)
    assert code == 202 and sorted(body["enqueued"]) == [f"{env.namespace}/cfg", f"{env.namespace}/other"]
    for name in ("cfg", "other"):
        await env.wait_status(name, lambda s: synced(s) and s.get("lastHandledTrigger") == body["request"], "handled")
    await asyncio.sleep(1)
    # At most one observe per config; the two share credentials, so one observation usually serves both.
    assert observes(env) in (4, 5)


async def test_webhook_endpoint_rejections(env: Env) -> None:
    await env.create(config_body("cfg", ["test-vm-1"], env.sim))
    path = f"/trigger/{env.namespace}/cfg"
    assert (await env.http("POST", path))[0] == 401
    code, body = await env.http("POST", path, headers={"Authorization": "Bearer nope"})
    assert code == 401 and body["error"] == "missing or invalid bearer token"
    assert (await env.http("POST", f"/trigger/{env.namespace}/unknown", headers=TOKEN))[0] == 404
    assert (await env.http("POST", path, headers=TOKEN, data=b"x" * 10_000))[0] == 413
    code, body = await env.http("GET", path, headers=TOKEN)
    assert code == 405 and "POST" in body["error"]
    assert "e2e-token" not in str(body)
