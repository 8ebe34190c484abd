"""A VM in a Nova cell that does not answer is "present, state unknown": its rows stay, status and an Event
say so, and it is not reported as missing (issue 11, item 2) - the controller on the simulator."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Env, config_body, wait_for

pytestmark = pytest.mark.e2e

TOKEN = {"Authorization": "Bearer e2e-token-0123456789"}


async def test_a_vm_in_a_down_cell_keeps_its_rows_and_is_not_called_missing(env: Env) -> None:
    await env.create(config_body("cfg", ["test-vm-1", "test-vm-2"], env.sim))
    await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced")
    (row,) = await env.agent_rows("test-vm-2")

    env.sim.state.set_cell_down(env.sim.state.find_server("test-vm-2").id)
    code, _ = await env.http("POST", f"/trigger/{env.namespace}/cfg", headers=TOKEN)
    assert code == 202
    status = await env.wait_status("cfg", lambda s: "state unknown" in s.get("message", ""), "state unknown")
    assert "test-vm-2" in status["message"] and "VMs not found" not in status["message"]
    assert "missingVMs" not in status
    (vm2,) = [vm for vm in status["vms"] if vm["name"] == "test-vm-2"]
    assert vm2["status"] == "UNKNOWN"
    assert await env.agent_rows("test-vm-2") == [row], "same row: same id, same netplan_success"
    events = await env.events("cfg")
    assert any(e["reason"] == "VMStateUnknown" for e in events)
    assert not any(e["reason"] == "VMNotFound" for e in events)

    env.sim.state.set_cell_down(env.sim.state.find_server("test-vm-2").id, down=False)
    code, _ = await env.http("POST", f"/trigger/{env.namespace}/cfg", headers=TOKEN)
    await wait_for(lambda: _clear(env), "back to known state")


async def _clear(env: Env) -> bool:
    status = await env.status("cfg")
    return status.get("vmsFound") == 2 and "state unknown" not in status.get("message", "")
