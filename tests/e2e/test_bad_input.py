"""Every bad input ends in status (phase Error, a message, a Warning Event) and a bounded retry - never in
silent backoff (issue 11, item 5)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes_asyncio import client

from multinic_ctrl.controller import reconciler
from tests.e2e.harness import Env, config_body, wait_for

pytestmark = pytest.mark.e2e


async def test_a_binary_password_value_is_a_credentials_error_in_status(env: Env) -> None:
    core = client.CoreV1Api(env.api)
    body = {
        "metadata": {"name": "os-creds"},
        "data": {"password": base64.b64encode(b"\xff\xfe\x00binary").decode(), "tls.key": "//79/A=="},
    }
    await core.create_namespaced_secret(env.namespace, body)
    await env.create(config_body("cfg", ["test-vm-1"], env.sim, secret_ref=("os-creds", "password")))
    status = await env.wait_status("cfg", lambda s: s.get("reason") == "CredentialsUnavailable", "credentials error")
    assert "key 'password' is not text" in status["message"]
    await wait_for(lambda: _has_event(env, "CredentialsUnavailable"), "a Warning Event")

    # A binary value under a key the controller does not read is fine.
    body["data"]["password"] = base64.b64encode(b"admin").decode()
    await core.replace_namespaced_secret("os-creds", env.namespace, body)
    await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced once the password is text")


async def test_an_unexpected_exception_ends_in_status_with_an_event_and_a_bounded_retry(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = reconciler.desired_rows
    calls: list[int] = []

    def broken(observation: Any) -> Any:
        calls.append(1)
        raise ValueError("port 'p1' has MAC 'zz:zz' <script>")

    monkeypatch.setattr(reconciler, "desired_rows", broken)
    await env.create(config_body("cfg", ["test-vm-1"], env.sim))
    status = await env.wait_status("cfg", lambda s: s.get("reason") == "InternalError", "internal error in status")
    assert status["phase"] == "Error" and "ValueError" in status["message"]
    assert "<script>" not in str(status), "exception text (input) is not quoted into status"
    await wait_for(lambda: _has_event(env, "InternalError"), "a Warning Event")
    # Retried on the error-retry interval (2 s in these tests), not lost and not hot-looping.
    first = len(calls)
    await wait_for(lambda: len(calls) > first, "retried", timeout=10)
    assert len(calls) <= first + 3
    monkeypatch.setattr(reconciler, "desired_rows", real)
    await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "recovers on the next retry", timeout=15)
    assert len(await env.agent_rows("test-vm-1")) == 1


async def _has_event(env: Env, reason: str) -> bool:
    return any(e["reason"] == reason and e["type"] == "Warning" for e in await env.events("cfg"))


async def test_a_port_with_a_malformed_mac_is_skipped_and_reported_the_others_sync(env: Env) -> None:
    vm1 = env.sim.state.find_server("test-vm-1")
    subnet = env.sim.state.find_subnet("k8s-subnet")
    bad = env.sim.state.add_port(subnet.id, "192.168.100.77", vm1.id, "fa-16-3e-bad")
    await env.create(config_body("cfg", ["test-vm-1", "test-vm-2"], env.sim))
    status = await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced despite the bad port")
    assert "1 port(s) skipped" in status["message"]
    (vm1_status,) = [vm for vm in status["vms"] if vm["name"] == "test-vm-1"]
    (entry,) = [i for i in vm1_status["interfaces"] if i["portID"] == bad.id]
    assert "not six hex octets" in entry["problem"]
    assert len(await env.agent_rows("test-vm-1")) == 1 and len(await env.agent_rows("test-vm-2")) == 1
    await wait_for(lambda: _has_event(env, "PortSkipped"), "a Warning Event")
