"""Two controller replicas: exactly one reconciles; when it stops, the standby takes over at once."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.harness import Env, config_body, leader_and_standby, wait_for

pytestmark = pytest.mark.e2e


async def test_one_leader_works_and_hands_over(env: Env) -> None:
    async with leader_and_standby(env) as (_leader, second, _server):
        await asyncio.sleep(1)
        assert second.elector is not None and not second.elector.is_leader, "exactly one leader"
        code, body = await env.http("GET", "/readyz")
        assert code == 200 and body["details"]["leadership"] == "leader"

        await env.create(config_body("cfg", ["test-vm-1"], env.sim))
        await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced by the leader")
        await asyncio.sleep(1)
        assert env.sim.request_log.count("network.networks") == 1, "the standby did not reconcile too"
        assert second.controller is not None and sum(second.controller.results.values()) == 0

        await env.stop()  # graceful: the leader releases its Lease
        await wait_for(lambda: second.elector is not None and second.elector.is_leader, "standby took over", 5)
        await env.patch("cfg", {"spec": {"vmNames": ["test-vm-1", "test-vm-2"]}})
        await env.wait_status("cfg", lambda s: s.get("vmsFound") == 2, "synced by the new leader")
        assert len(await env.agent_rows("test-vm-2")) == 1
