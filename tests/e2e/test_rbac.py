"""The controller works with exactly the permissions manifests/rbac/controller.yaml grants - and no more."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.e2e.harness import Env, config_body, wait_for
from tests.support.control_plane import ControlPlane

pytestmark = pytest.mark.e2e

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac" / "controller.yaml"


async def test_controller_runs_as_its_least_privilege_service_account(env: Env, control_plane: ControlPlane) -> None:
    await env.stop()
    manifest = RBAC.read_text().replace("namespace: multinic-system", f"namespace: {env.namespace}")
    control_plane.kubectl("apply", "-f", "-", stdin=manifest)
    sa = f"system:serviceaccount:{env.namespace}:multinic-controller"
    kubeconfig = control_plane.service_account_kubeconfig(env.namespace, "multinic-controller", create=False)

    def can(verb: str, resource: str, namespace: str | None = env.namespace) -> bool:
        scope = ["-n", namespace] if namespace else []
        out = control_plane.kubectl("auth", "can-i", verb, resource, f"--as={sa}", *scope, check=False)
        return out.stdout.strip() == "yes"

    assert not can("create", "secrets") and not can("delete", "openstackconfigs.multinic.example.com")
    assert not can("update", "multinicoperators.multinic.example.com") and not can("list", "pods")
    assert not can("create", "leases.coordination.k8s.io", "default"), "Leases only in its own namespace"

    env.settings = replace(env.settings, kubeconfig=kubeconfig)
    await env.start(leader_elect=True)
    assert env.service is not None
    await wait_for(
        lambda: env.service is not None and env.service.elector is not None and env.service.elector.is_leader,
        "leading with its own Lease",
    )

    await env.put_secret("os-creds", {"password": "admin"})
    await env.create(config_body("cfg", ["test-vm-1"], env.sim, secret_ref=("os-creds", "password")))
    await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced as the service account")
    assert len(await env.agent_rows("test-vm-1")) == 1
    await wait_for(lambda: _has_event(env, "Synced"), "Event written as the service account")
    await env.delete("cfg")
    await wait_for(lambda: _gone(env), "finalizer removed as the service account")
    assert await env.all_interfaces() == []
    # The audit log proves who did the writes, and that nothing it tried was forbidden.
    mine = [e for e in control_plane.audit_events() if e.get("user", {}).get("username") == sa]
    writes = {
        (e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("subresource", ""))
        for e in mine
        if e["verb"] in ("patch", "update", "create")
    }
    assert {("patch", "openstackconfigs", "status"), ("create", "events", "")} <= writes
    assert not [e for e in mine if e.get("responseStatus", {}).get("code") == 403]


async def _has_event(env: Env, reason: str) -> bool:
    return any(e["reason"] == reason for e in await env.events("cfg"))


async def _gone(env: Env) -> bool:
    return await env.get("cfg") is None
