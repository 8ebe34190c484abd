"""Issue 13 end to end: the operator itself serves `vprotection.multinic.example.com` and keeps its configuration.

The operator runs in this test process as its ServiceAccount (manifests/rbac/operator.yaml applied as is), with
WEBHOOK_URL=https://127.0.0.1:PORT/validate, so the real kube-apiserver calls it through `clientConfig.url`. The
configuration is scoped by the operator's namespaces (OPERATOR_NAMESPACES = the test's namespace), so the
fail-closed webhook cannot catch another test's objects; it is deleted after the test whatever happens.

Shown: a direct patch as a normal user (`--as=jane`) is denied with the documented message and the same change
through the MultiNicOperator is applied; denials become Events and batched `status.protectionStatus` writes; the
configuration deleted or its caBundle edited is back and correct within seconds; with the operator stopped users
are denied (fail closed) while the operator's own identity passes, and a restarted operator repairs drift before
its webhook serves; deleting the last MultiNicOperator removes the configuration. The apiserver's audit log shows
every request of the operator covered by the manifest and none denied.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from multinic_ctrl.kube import ApiError, KubeClient, is_not_found
from multinic_ctrl.operator.resources import MULTINICOPERATORS
from multinic_ctrl.operator.webhook_config import CONFIGURATION_NAME, injected_bundle
from multinic_ctrl.operator.webhook_sync import SECRETS, VALIDATING_WEBHOOK_CONFIGURATIONS
from multinic_ctrl.settings import OperatorSettings, Settings
from tests.e2e.operator_harness import (
    Cluster,
    OperatorProcess,
    ensure_crds,
    eventually,
    new_namespace,
    operator_body,
)
from tests.e2e.test_operator_rbac import covered
from tests.support.control_plane import ControlPlane, free_port

pytestmark = pytest.mark.e2e

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac" / "operator.yaml"
SA_USER = "system:serviceaccount:multinic-system:multinic-operator"
TLS_SECRET = "multinic-operator-webhook-tls"
NAME = "production-system"
DENIED = 'admission webhook "vprotection.multinic.example.com" denied the request'
SCALE_DENIED = 'admission webhook "vprotection-scale.multinic.example.com" denied the request'
FAILED_CALL = 'failed calling webhook "vprotection.multinic.example.com"'
JANE = "jane"


@pytest.fixture
async def admin(workload_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    ensure_crds(workload_plane)
    async with await KubeClient.from_config(str(workload_plane.kubeconfig_path)) as kube:
        yield kube


async def configuration(admin: KubeClient) -> dict[str, Any] | None:
    try:
        return await admin.get(VALIDATING_WEBHOOK_CONFIGURATIONS, CONFIGURATION_NAME)
    except ApiError as exc:
        if is_not_found(exc):
            return None
        raise


async def tls_bundle(admin: KubeClient) -> bytes:
    secret = await admin.get(SECRETS, TLS_SECRET, "multinic-system")
    return base64.b64decode(secret["data"]["ca.crt"])


def all_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for d in docs if d["kind"] in ("ClusterRole", "Role") for rule in d["rules"]]


async def test_the_operator_protects_what_it_manages(workload_plane: ControlPlane, admin: KubeClient) -> None:
    plane = workload_plane
    plane.kubectl("create", "namespace", "multinic-system", check=False)
    plane.kubectl("apply", f"--filename={RBAC}")
    kubeconfig = plane.service_account_kubeconfig("multinic-system", "multinic-operator", create=False)
    ns = new_namespace(plane, "prot")
    # RBAC lets jane edit anything in the namespace: only admission stops her.
    plane.kubectl("-n", ns, "create", "rolebinding", "jane", "--clusterrole=cluster-admin", f"--user={JANE}")
    cluster = Cluster(admin, ns)
    port = free_port()
    settings = Settings(
        kubeconfig=kubeconfig,
        operator=OperatorSettings(
            namespaces=(ns,),
            leader_elect=False,
            resync_seconds=30,
            webhook_enabled=True,
            webhook_url=f"https://127.0.0.1:{port}/validate",
            webhook_port=port,
            webhook_address="127.0.0.1",
            webhook_status_interval=1.0,
            webhook_sync_period=5.0,
        ),
    )
    figures: dict[str, float] = {}

    async def kubectl(*args: str, as_user: str | None = JANE) -> subprocess.CompletedProcess[str]:
        argv = [*args, f"--namespace={ns}"] + ([f"--as={as_user}"] if as_user else [])
        return await asyncio.to_thread(plane.kubectl, *argv, check=False)

    def denied(done: subprocess.CompletedProcess[str], *fragments: str, prefix: str = DENIED) -> bool:
        return done.returncode != 0 and prefix in done.stderr and all(f in done.stderr for f in fragments)

    proc = OperatorProcess(settings)
    try:
        started = time.monotonic()
        await proc.start()
        assert proc.service is not None and proc.service.protection is not None
        protection = proc.service.protection
        assert protection.identity.username == SA_USER  # from SelfSubjectReview: the kubeconfig is the SA's
        await eventually(lambda: asyncio.sleep(0, protection.ready), "webhook ready without installations", 30)
        assert await configuration(admin) is None  # no installation, no configuration

        # ---- install: configuration applied with the Secret's CA; Ready; status says active
        created = time.monotonic()
        # No database: kube-controller-manager and kwok run as the admin here (not as kube-system ServiceAccounts),
        # so their PVC binding would be judged as a user's edit and only add noise to the counts.
        await admin.create(MULTINICOPERATORS, operator_body(NAME, database={"enabled": False}), ns)

        async def injected() -> bool:
            live = await configuration(admin)
            return live is not None and injected_bundle(live) == await tls_bundle(admin)

        await eventually(injected, "caBundle injected", 30)
        figures["MultiNicOperator created -> caBundle injected"] = time.monotonic() - created
        await proc.service._webhook_ready()  # /readyz's check passes
        live = await configuration(admin)
        assert live is not None
        webhook = live["webhooks"][0]
        assert webhook["clientConfig"]["url"] == f"https://127.0.0.1:{port}/validate"
        assert webhook["namespaceSelector"]["matchExpressions"][0]["values"] == [ns]
        assert SA_USER in webhook["matchConditions"][0]["expression"]
        assert webhook["failurePolicy"] == "Fail"

        async def active() -> dict[str, Any] | None:
            status = await cluster.status(NAME)
            found = status.get("protectionStatus") or {}
            return found if found.get("active") is True else None

        await eventually(active, "status.protectionStatus.active", 60)
        figures["operator start -> protectionStatus.active"] = time.monotonic() - started
        await eventually(lambda: cluster.get("Deployment", "multinic-controller"), "Deployment installed", 30)

        # ---- a normal user is denied, with the documented message; reads pass
        async def enforced() -> bool:
            done = await kubectl("patch", "deployment", "multinic-controller", "--dry-run=server", "--type=merge",
                                 "--patch", '{"metadata":{"annotations":{"probe":"1"}}}')  # fmt: skip
            return denied(done)

        await eventually(enforced, "the apiserver enforcing the configuration", 30)
        patch = await kubectl(
            "patch", "deployment", "multinic-controller", "--type=merge", "--patch", '{"spec":{"replicas":3}}'
        )
        assert denied(patch, f"MultiNicOperator {ns}/{NAME}", "spec.controller.replicas"), patch.stderr
        assert (await kubectl("get", "deployment", "multinic-controller")).returncode == 0
        scaled = await kubectl("scale", "deployment", "multinic-controller", "--replicas=5")
        assert denied(scaled, prefix=SCALE_DENIED), scaled.stderr
        deleted = await kubectl("delete", "service", "multinic-controller", "--wait=false")
        assert denied(deleted, "deleting the MultiNicOperator uninstalls it"), deleted.stderr

        # ---- the same change through the MultiNicOperator is applied
        changed = await kubectl(
            "patch", "multinicoperator", NAME, "--type=merge", "--patch", '{"spec":{"controller":{"replicas":3}}}',
            as_user=None,
        )  # fmt: skip
        assert changed.returncode == 0, changed.stderr

        async def three() -> bool:
            deployment = await cluster.get("Deployment", "multinic-controller")
            return deployment is not None and deployment["spec"]["replicas"] == 3

        await eventually(three, "replicas 3 applied through the MultiNicOperator", 30)

        # ---- denials: Events at once, protectionStatus in batches (not one write per request)
        await eventually(lambda: cluster.has_event(NAME, "MutationPrevented", f"by {JANE}"), "Event", 20)
        first = await eventually(lambda: _prevented_at_least(cluster, 3), "the first three denials counted", 20)
        await asyncio.sleep(1.5)  # let the batch in flight land
        counted_before = (await cluster.status(NAME))["protectionStatus"]["preventedMutations"]
        writes_before = status_writes(plane)
        burst = await asyncio.gather(
            *(kubectl("annotate", "deployment", "multinic-controller", f"burst={i}", "--overwrite") for i in range(8))
        )
        assert all(denied(done) for done in burst), [d.stderr for d in burst]
        # (kube-controller-manager runs as the admin here: its own denied updates may add to the count)
        status = await eventually(
            lambda: _prevented_at_least(cluster, counted_before + 8), "eight more denials counted", 20
        )
        assert status["active"] is True and first["lastProtectionEvent"]
        assert "denied update of deployments" in status["lastProtectionEvent"], status
        writes = status_writes(plane) - writes_before
        assert 1 <= writes < 8, writes  # batched: not one status write per denial

        # ---- break-glass deletion and a caBundle edit: back and correct within seconds
        await admin.delete(VALIDATING_WEBHOOK_CONFIGURATIONS, CONFIGURATION_NAME)
        gone_at = time.monotonic()
        await eventually(injected, "configuration recreated", 15)
        figures["configuration deleted -> recreated"] = time.monotonic() - gone_at
        edit = [{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle",
                 "value": base64.b64encode(b"not a CA").decode()}]  # fmt: skip
        await asyncio.to_thread(plane.kubectl, "patch", "validatingwebhookconfiguration", CONFIGURATION_NAME,
                                "--type=json", f"--patch={json.dumps(edit)}")  # fmt: skip
        edited_at = time.monotonic()
        await eventually(injected, "caBundle re-injected", 15)
        figures["caBundle edited -> re-injected"] = time.monotonic() - edited_at
        await eventually(enforced, "enforced again after the repairs", 30)

        # ---- operator stopped: users denied (fail closed); the operator's own identity still passes
        await proc.stop()
        stopped = await kubectl(
            "patch", "deployment", "multinic-controller", "--type=merge", "--patch", '{"spec":{"replicas":4}}'
        )
        assert stopped.returncode != 0 and FAILED_CALL in stopped.stderr, stopped.stderr
        before = await cluster.get("Deployment", "multinic-controller")
        assert before is not None
        as_operator = await kubectl("delete", "deployment", "multinic-controller", "--wait=false", as_user=SA_USER)
        assert as_operator.returncode == 0, as_operator.stderr
        await eventually(lambda: _absent(cluster, "Deployment", "multinic-controller"), "Deployment gone", 20)

        # ---- restarted: the drift is repaired before the webhook serves, then users are judged again
        proc = OperatorProcess(settings)
        restarted = time.monotonic()
        await proc.start()
        assert proc.service is not None and proc.service.protection is not None
        protection = proc.service.protection
        await eventually(lambda: asyncio.sleep(0, protection.hook is not None), "webhook serving again", 45)
        repaired = await cluster.get("Deployment", "multinic-controller")
        assert repaired is not None and repaired["metadata"]["uid"] != before["metadata"]["uid"]
        await eventually(lambda: asyncio.sleep(0, protection.ready), "ready after the restart", 30)
        figures["restart -> ready"] = time.monotonic() - restarted
        await eventually(enforced, "enforced after the restart", 30)

        # ---- the last MultiNicOperator takes the configuration with it
        await admin.delete(MULTINICOPERATORS, NAME, ns)
        await eventually(lambda: _absent_operator(cluster), "MultiNicOperator deleted (finalizer released)", 60)
        assert await configuration(admin) is None
        await asyncio.sleep(2)
        assert await configuration(admin) is None  # and it stays gone
    finally:
        await proc.stop()
        plane.kubectl("delete", "validatingwebhookconfiguration", CONFIGURATION_NAME, "--ignore-not-found", check=False)
        plane.kubectl("-n", "multinic-system", "delete", "secret", TLS_SECRET, "--ignore-not-found", check=False)
        plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    print("protection figures:", {k: round(v, 2) for k, v in figures.items()})

    time.sleep(1)  # the audit log is written asynchronously
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    granted = all_rules(docs)
    mine = {e["auditID"]: e for e in plane.audit_events() if (e.get("user") or {}).get("username") == SA_USER}
    mine = {k: e for k, e in mine.items() if e.get("objectRef") and not (e.get("impersonatedUser") or {})}
    refused = sorted({(e["verb"], e["requestURI"]) for e in mine.values()
                      if (e.get("responseStatus") or {}).get("code") == 403})  # fmt: skip
    assert not refused
    uncovered = sorted(
        {(e["verb"], e["objectRef"].get("resource", "")) for e in mine.values() if not covered(granted, e)}
    )
    assert not uncovered


def status_writes(plane: ControlPlane) -> int:
    """Status writes of the operator (its reconciles' and the protection batches') so far."""
    return len(
        {
            e["auditID"]
            for e in plane.audit_events()
            if (e.get("user") or {}).get("username") == SA_USER
            and e.get("verb") == "patch"
            and (e.get("objectRef") or {}).get("subresource") == "status"
            and (e.get("objectRef") or {}).get("resource") == "multinicoperators"
        }
    )


async def _prevented_at_least(cluster: Cluster, count: int) -> dict[str, Any] | None:
    found = (await cluster.status(NAME)).get("protectionStatus") or {}
    return found if (found.get("preventedMutations") or 0) >= count else None


async def _absent(cluster: Cluster, kind: str, name: str) -> bool:
    return await cluster.get(kind, name) is None


async def _absent_operator(cluster: Cluster) -> bool:
    return await cluster.operator(NAME) is None


async def test_the_operators_certificate_renewal_keeps_requests_judged(
    workload_plane: ControlPlane, admin: KubeClient
) -> None:
    """WEBHOOK_CERT_LIFETIME=6s: the operator's own loop renews the serving certificate about every 4 s (Secret
    first, then the served certificate); every request in between is judged, none fails on TLS."""
    plane = workload_plane
    plane.kubectl("create", "namespace", "multinic-system", check=False)
    plane.kubectl("apply", f"--filename={RBAC}")
    kubeconfig = plane.service_account_kubeconfig("multinic-system", "multinic-operator", create=False)
    ns = new_namespace(plane, "renew")
    plane.kubectl("-n", ns, "create", "rolebinding", "jane", "--clusterrole=cluster-admin", f"--user={JANE}")
    port = free_port()
    settings = Settings(
        kubeconfig=kubeconfig,
        operator=OperatorSettings(
            namespaces=(ns,),
            leader_elect=False,
            webhook_enabled=True,
            webhook_url=f"https://127.0.0.1:{port}/validate",
            webhook_port=port,
            webhook_address="127.0.0.1",
            webhook_cert_lifetime=6.0,
        ),
    )
    proc = OperatorProcess(settings)
    try:
        await proc.start()
        assert proc.service is not None and proc.service.protection is not None
        protection = proc.service.protection
        await admin.create(MULTINICOPERATORS, operator_body(NAME, database={"enabled": False}), ns)
        cluster = Cluster(admin, ns)
        await eventually(lambda: cluster.get("Deployment", "multinic-controller"), "Deployment installed", 30)

        async def dry_run() -> subprocess.CompletedProcess[str]:
            argv = ["patch", "deployment", "multinic-controller", "--dry-run=server", "--type=merge", "--patch",
                    '{"metadata":{"annotations":{"probe":"1"}}}', f"--namespace={ns}", f"--as={JANE}"]  # fmt: skip
            return await asyncio.to_thread(plane.kubectl, *argv, check=False)

        async def judged() -> bool:
            return DENIED in (await dry_run()).stderr

        await eventually(judged, "enforced", 30)
        generation = protection.hook.tls.generation if protection.hook else 0
        certificates = set()
        deadline = time.monotonic() + 13
        answers = []
        while time.monotonic() < deadline:
            answers.append((await dry_run()).stderr)
            secret = await admin.get(SECRETS, TLS_SECRET, "multinic-system")
            certificates.add(secret["data"]["tls.crt"])
            await asyncio.sleep(0.3)
        assert all(DENIED in a for a in answers), [a for a in answers if DENIED not in a][:3]
        assert len(certificates) >= 3, len(certificates)
        assert protection.hook is not None and protection.hook.tls.generation >= generation + 2
        assert protection.ready
    finally:
        await proc.stop()
        plane.kubectl("delete", "validatingwebhookconfiguration", CONFIGURATION_NAME, "--ignore-not-found", check=False)
        plane.kubectl("-n", "multinic-system", "delete", "secret", TLS_SECRET, "--ignore-not-found", check=False)
        plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
