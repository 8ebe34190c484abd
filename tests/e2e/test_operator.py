"""The operator on a real apiserver with kube-controller-manager, kube-scheduler and kwok fake nodes (the workload
plane): a MultiNicOperator becomes a running installation, drift is repaired (or only reported), spec changes roll
out, deletion cleans up and keeps the data, and a restart mid-reconcile neither duplicates nor loses anything.

The lifecycle test runs the operator as its own ServiceAccount with exactly manifests/rbac/operator.yaml and checks
the apiserver's audit log afterwards: no request of the operator was denied.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from multinic_ctrl.kube import KubeClient
from multinic_ctrl.kube.apply import server_side_apply
from multinic_ctrl.kube.client import PODS
from multinic_ctrl.metrics import REGISTRY
from multinic_ctrl.operator.desired import desired_objects
from multinic_ctrl.operator.names import FIELD_MANAGER, MANAGED_BY_LABEL, PROTECTED_LABEL, Owner
from multinic_ctrl.operator.rbac import packaged_template
from multinic_ctrl.operator.reconciler import FINALIZER, RECREATE_ANNOTATION, owns_field
from multinic_ctrl.operator.recovery import DATA_CLAIM, RECOVERY_SECRET
from multinic_ctrl.operator.resources import MANAGED, MULTINICOPERATORS
from multinic_ctrl.operator.spec import parse_spec
from tests.e2e.operator_harness import (
    CONTROLLER_IMAGE,
    Cluster,
    ensure_crds,
    eventually,
    new_namespace,
    operator_body,
    running_operator,
)
from tests.support.control_plane import ControlPlane, free_port

pytestmark = pytest.mark.e2e

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac" / "operator.yaml"
SA_USER = "system:serviceaccount:multinic-system:multinic-operator"
NAME = "production-system"
CREDENTIALS = "multinic-mariadb-credentials"
STRATEGIC = "application/strategic-merge-patch+json"


def drift_count(kind: str) -> float:
    return REGISTRY.get_sample_value("multinic_operator_drift_corrections_total", {"kind": kind}) or 0.0


@pytest.fixture
async def admin(workload_plane: ControlPlane) -> AsyncIterator[KubeClient]:
    ensure_crds(workload_plane)
    async with await KubeClient.from_config(str(workload_plane.kubeconfig_path)) as kube:
        yield kube


async def ready(cluster: Cluster, generation: int | None = None) -> dict[str, Any] | None:
    status = await cluster.status(NAME)
    if status.get("phase") != "Ready":
        return None
    if generation is not None and status.get("observedGeneration") != generation:
        return None
    return status


async def test_lifecycle_as_its_own_service_account(workload_plane: ControlPlane, admin: KubeClient) -> None:
    workload_plane.kubectl("create", "namespace", "multinic-system", check=False)
    workload_plane.kubectl("apply", f"--filename={RBAC}")
    kubeconfig = workload_plane.service_account_kubeconfig("multinic-system", "multinic-operator", create=False)
    ns = new_namespace(workload_plane)
    cluster = Cluster(admin, ns)
    figures: dict[str, float] = {}

    async with running_operator(kubeconfig, (ns,), leader_elect=True):
        # ---- install: every object, labelled, owned where Kubernetes allows; Ready once kwok runs the pods
        started = time.monotonic()
        await admin.create(MULTINICOPERATORS, operator_body(NAME), ns)
        status = await eventually(lambda: ready(cluster), "installation Ready", 120)
        figures["install to Ready"] = time.monotonic() - started
        assert status["controllerStatus"]["ready"] == "2/2"
        assert status["databaseStatus"]["phase"] == "Ready"
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions["Ready"] == "True" and conditions["ControllerReady"] == "True"
        assert conditions["Drifted"] == "False" and conditions["InlineCredentials"] == "False"
        table = workload_plane.kubectl("-n", ns, "get", "mno", NAME).stdout.splitlines()
        assert table[0].split() == ["NAME", "PHASE", "CONTROLLER", "DATABASE", "AGE"]
        assert table[1].split()[:4] == [NAME, "Ready", "2/2", "Ready"]
        mno = await cluster.operator(NAME)
        assert mno is not None and FINALIZER in mno["metadata"]["finalizers"]
        uid = mno["metadata"]["uid"]
        for kind, name in [
            ("Deployment", "multinic-controller"),
            ("Service", "multinic-controller"),
            ("ServiceAccount", "multinic-controller"),
            ("StatefulSet", "multinic-mariadb"),
            ("Service", "multinic-mariadb"),
            ("Service", "multinic-mariadb-headless"),
            ("CronJob", "multinic-mariadb-backup"),
            ("RoleBinding", "multinic-controller-leader-election"),
        ]:
            obj = await cluster.get(kind, name)
            assert obj is not None, f"{kind} {name} missing"
            labels = obj["metadata"]["labels"]
            assert labels[MANAGED_BY_LABEL] == NAME and labels[PROTECTED_LABEL] == "true"
            assert [r["uid"] for r in obj["metadata"]["ownerReferences"]] == [uid]
        cluster_role = await cluster.get("ClusterRole", f"multinic-controller-{ns}")
        assert cluster_role is not None and "ownerReferences" not in cluster_role["metadata"]
        secret = await cluster.get("Secret", CREDENTIALS)
        assert secret is not None and "ownerReferences" not in secret["metadata"]  # kept on uninstall
        credentials = await cluster.secret_data(CREDENTIALS)
        assert credentials is not None and set(credentials) == {"root-password", "password"}
        assert await cluster.secret_data(RECOVERY_SECRET) == credentials

        # ---- steady state: nothing re-applied, no drift seen in the operator's own objects, status not rewritten
        # Settled first: the audit log is written asynchronously, and kwok's pods report readiness in steps, so
        # the last install writes may still arrive; steady state starts once the count holds for 2 s (<= 30 s).
        writes_before, settle_deadline = len(operator_writes(workload_plane)), time.monotonic() + 30
        while time.monotonic() < settle_deadline:
            await asyncio.sleep(2)
            latest = len(operator_writes(workload_plane))
            if latest == writes_before:
                break
            writes_before = latest
        await asyncio.sleep(3)
        assert len(operator_writes(workload_plane)) == writes_before
        assert not await cluster.has_event(NAME, "DriftCorrected")

        # ---- drift: each repaired, with an Event and the counter
        before = drift_count("Deployment")
        deployment = await cluster.get("Deployment", "multinic-controller")
        assert deployment is not None
        started = time.monotonic()
        await admin.delete(MANAGED["Deployment"], "multinic-controller", ns)

        async def recreated() -> bool:
            again = await cluster.get("Deployment", "multinic-controller")
            return again is not None and again["metadata"]["uid"] != deployment["metadata"]["uid"]

        await eventually(recreated, "the deleted Deployment to be recreated", 30)
        figures["deleted Deployment recreated"] = time.monotonic() - started
        await eventually(lambda: cluster.has_event(NAME, "DriftCorrected", "Deployment multinic-controller"), "Event")
        assert drift_count("Deployment") >= before + 1

        await admin.delete(MANAGED["Secret"], CREDENTIALS, ns)
        restored = await eventually(lambda: cluster.secret_data(CREDENTIALS), "credentials Secret back", 30)
        assert restored == credentials, "a recreated credentials Secret must hold the original passwords"
        await eventually(lambda: cluster.has_event(NAME, "CredentialsRestored"), "CredentialsRestored Event")
        # The recovery copy is kept too: deleted or edited, it follows the credentials Secret again.
        await admin.delete(MANAGED["Secret"], RECOVERY_SECRET, ns)
        assert await eventually(lambda: cluster.secret_data(RECOVERY_SECRET), "recovery copy back", 30) == credentials
        await admin.patch(MANAGED["Secret"], RECOVERY_SECRET, {"stringData": {"password": "tampered"}}, ns)

        async def copy_repaired() -> bool:
            return await cluster.secret_data(RECOVERY_SECRET) == credentials

        await eventually(copy_repaired, "recovery copy repaired", 30)

        before = drift_count("Deployment")
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "controller", "image": "evil:1"}]}}}}
        await admin.patch(MANAGED["Deployment"], "multinic-controller", patch, ns, content_type=STRATEGIC)

        async def image_restored() -> bool:
            d = await cluster.get("Deployment", "multinic-controller")
            return d is not None and d["spec"]["template"]["spec"]["containers"][0]["image"] == CONTROLLER_IMAGE

        await eventually(image_restored, "the controller image to be restored", 30)
        assert drift_count("Deployment") >= before + 1

        before = drift_count("StatefulSet")
        await admin.patch(MANAGED["StatefulSet"], "multinic-mariadb", {"spec": {"replicas": 3}}, ns)

        async def scaled_back() -> bool:
            s = await cluster.get("StatefulSet", "multinic-mariadb")
            return s is not None and s["spec"]["replicas"] == 1

        await eventually(scaled_back, "the StatefulSet scaled back to 1", 30)
        assert drift_count("StatefulSet") >= before + 1
        await eventually(lambda: cluster.has_event(NAME, "DriftCorrected", "StatefulSet multinic-mariadb"), "Event")

        # ---- upgrade: replicas 3 and a new image roll out; status follows until done
        await eventually(lambda: ready(cluster), "Ready again after the repairs", 120)
        new_image = "registry.invalid/multinic/controller:v2"
        change = {"spec": {"controller": {"replicas": 3, "image": new_image}}}
        updated = await admin.patch(MULTINICOPERATORS, NAME, change, ns)
        generation = updated["metadata"]["generation"]
        status = await eventually(lambda: ready(cluster, generation), "upgrade rolled out", 120)
        assert status["controllerStatus"]["ready"] == "3/3"
        assert status["controllerStatus"]["image"] == new_image
        deployment = await cluster.get("Deployment", "multinic-controller")
        assert deployment is not None and deployment["spec"]["replicas"] == 3

        # ---- uninstall: managed objects gone, data kept, finalizer released
        await admin.delete(MULTINICOPERATORS, NAME, ns)
        await eventually(lambda: _gone(cluster), "the MultiNicOperator to be deleted", 60)
        for kind, name in [
            ("Deployment", "multinic-controller"),
            ("StatefulSet", "multinic-mariadb"),
            ("Service", "multinic-mariadb"),
            ("CronJob", "multinic-mariadb-backup"),
            ("ServiceAccount", "multinic-controller"),
            ("ClusterRole", f"multinic-controller-{ns}"),
            ("ClusterRoleBinding", f"multinic-controller-{ns}"),
        ]:
            await eventually(lambda k=kind, n=name: _absent(cluster, k, n), f"{kind} {name} removed", 30)
        assert await cluster.secret_data(CREDENTIALS) == credentials
        assert await cluster.get("PersistentVolumeClaim", DATA_CLAIM) is not None

    print("\nfigures: " + ", ".join(f"{k}: {v:.1f}s" for k, v in figures.items()))
    writes = Counter(f"{verb} {uri.split('?')[0].rsplit('/', 1)[0]}" for verb, uri in operator_writes(workload_plane))
    print("operator writes during the whole cycle:\n" + "\n".join(f"  {n:3} {w}" for w, n in sorted(writes.items())))
    denied = [
        e
        for e in workload_plane.audit_events()
        if (e.get("user") or {}).get("username") == SA_USER and (e.get("responseStatus") or {}).get("code") == 403
    ]
    assert not denied, [(e["verb"], e.get("requestURI")) for e in denied]


def operator_writes(plane: ControlPlane) -> list[tuple[str, str]]:
    """Writes of the operator's ServiceAccount other than leader election and Events (verb, URI)."""
    latest = {e["auditID"]: e for e in plane.audit_events() if (e.get("user") or {}).get("username") == SA_USER}
    return [
        (e["verb"], e["requestURI"])
        for e in latest.values()
        if e["verb"] in ("create", "patch", "update", "delete")
        and (e.get("objectRef") or {}).get("resource") not in ("leases", "events")
    ]


async def _gone(cluster: Cluster) -> bool:
    return await cluster.operator(NAME) is None


async def _absent(cluster: Cluster, kind: str, name: str) -> bool:
    obj = await cluster.get(kind, name)
    return obj is None or bool(obj["metadata"].get("deletionTimestamp"))


async def test_auto_recovery_off_only_reports(workload_plane: ControlPlane, admin: KubeClient) -> None:
    ns = new_namespace(workload_plane)
    cluster = Cluster(admin, ns)
    async with running_operator(workload_plane.kubeconfig_path, (ns,)):
        body = operator_body(NAME, protection={"enableAutoRecovery": False})
        body["spec"]["database"] = {"enabled": False}
        await admin.create(MULTINICOPERATORS, body, ns)
        await eventually(lambda: ready(cluster), "installation Ready", 120)
        before = drift_count("Deployment")
        await admin.patch(MANAGED["Deployment"], "multinic-controller", {"spec": {"replicas": 5}}, ns)

        async def reported() -> bool:
            conditions = {c["type"]: c for c in (await cluster.status(NAME)).get("conditions", [])}
            drifted = conditions.get("Drifted") or {}
            return drifted.get("status") == "True" and "spec.replicas" in drifted.get("message", "")

        await eventually(reported, "the drift to be reported in status", 30)
        await eventually(lambda: cluster.has_event(NAME, "DriftDetected", "spec.replicas"), "DriftDetected Event")
        reported = {"kind": "Deployment", "action": "reported"}
        once = REGISTRY.get_sample_value("multinic_operator_drift_detected_total", reported)
        # Another reconcile (a label change wakes it) reports the same drift in status only: no new Event or count.
        await admin.patch(MULTINICOPERATORS, NAME, {"metadata": {"labels": {"touched": "yes"}}}, ns)
        await asyncio.sleep(2)
        assert REGISTRY.get_sample_value("multinic_operator_drift_detected_total", reported) == once
        assert len([e for e in await cluster.events(NAME) if e["reason"] == "DriftDetected"]) == 1
        deployment = await cluster.get("Deployment", "multinic-controller")
        assert deployment is not None and deployment["spec"]["replicas"] == 5, "auto-recovery off: not repaired"
        assert drift_count("Deployment") == before

        # Turning auto-recovery on repairs it.
        await admin.patch(MULTINICOPERATORS, NAME, {"spec": {"protection": {"enableAutoRecovery": True}}}, ns)

        async def repaired() -> bool:
            d = await cluster.get("Deployment", "multinic-controller")
            return d is not None and d["spec"]["replicas"] == 2

        await eventually(repaired, "the drift repaired once auto-recovery is on", 30)


async def test_restart_mid_reconcile_neither_duplicates_nor_loses(
    workload_plane: ControlPlane, admin: KubeClient
) -> None:
    ns = new_namespace(workload_plane)
    cluster = Cluster(admin, ns)
    async with running_operator(workload_plane.kubeconfig_path, (ns,)) as first:
        await admin.create(MULTINICOPERATORS, operator_body(NAME), ns)
        # Stop as soon as the first objects exist: the install is half done.
        await eventually(lambda: cluster.secret_data(CREDENTIALS), "the credentials Secret", 30)
        await first.stop()
    credentials = await cluster.secret_data(CREDENTIALS)
    async with running_operator(workload_plane.kubeconfig_path, (ns,)):
        await eventually(lambda: ready(cluster), "installation Ready after the restart", 120)
        assert await cluster.secret_data(CREDENTIALS) == credentials, "passwords must survive a restart"
        assert await cluster.secret_data(RECOVERY_SECRET) == credentials
        for kind in ("Deployment", "StatefulSet", "Service", "CronJob", "Secret", "ServiceAccount"):
            found = await admin.list(MANAGED[kind], ns, label_selector=f"{MANAGED_BY_LABEL}={NAME}")
            names = [o["metadata"]["name"] for o in found["items"]]
            assert len(names) == len(set(names))
        deployments = await admin.list(MANAGED["Deployment"], ns)
        assert [d["metadata"]["name"] for d in deployments["items"]] == ["multinic-controller"]
        pods = workload_plane.kubectl("-n", ns, "get", "pods", "-o", "name").stdout.split()
        assert len([p for p in pods if "multinic-controller" in p]) == 2
        events = [e["reason"] for e in await cluster.events(NAME)]
        assert "CredentialsGenerated" in events and "CredentialsRestored" not in events


async def test_controller_pod_spec_passes_pod_security_restricted(
    workload_plane: ControlPlane, admin: KubeClient
) -> None:
    ns = new_namespace(workload_plane, "pss")
    workload_plane.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    spec = parse_spec(yaml.safe_load(yaml.safe_dump(operator_body(NAME)["spec"])))
    owner = Owner(NAME, ns, "0b6e4a8c-2f1d-4c3b-9a7e-5d8f1e2c3b4a", 1)
    pods = []
    for obj in desired_objects(spec, owner, packaged_template()):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            template = obj["spec"]["template"]
        elif obj["kind"] == "CronJob":
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        pod_spec = dict(template["spec"], serviceAccountName="default")
        claims = obj["spec"].get("volumeClaimTemplates") or []  # the StatefulSet controller adds these volumes
        pod_spec["volumes"] = [*pod_spec["volumes"], *({"name": c["metadata"]["name"], "emptyDir": {}} for c in claims)]
        meta = {"name": f"{obj['kind'].lower()}-pod", "namespace": ns}
        pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec})
    assert len(pods) == 3
    for pod in pods:
        # The apiserver enforces `restricted` on Pods (workload objects only get warnings): a violation is a 403.
        answer = await server_side_apply(admin, PODS, pod, field_manager="test", dry_run=True)
        assert answer["metadata"]["name"] == pod["metadata"]["name"]


async def test_statefulset_change_kubernetes_refuses_is_reported_not_forced(
    workload_plane: ControlPlane, admin: KubeClient
) -> None:
    ns = new_namespace(workload_plane)
    cluster = Cluster(admin, ns)
    async with running_operator(workload_plane.kubeconfig_path, (ns,)):
        body = operator_body(NAME)
        # The backup volume's size follows storageSize unless given; kwok's storage class cannot expand volumes.
        body["spec"]["database"]["backup"]["target"] = {"storageSize": "1Gi"}
        await admin.create(MULTINICOPERATORS, body, ns)
        await eventually(lambda: ready(cluster), "installation Ready", 120)
        before = await cluster.get("StatefulSet", "multinic-mariadb")
        assert before is not None
        change = {"spec": {"database": {"storageSize": "2Gi", "image": "registry.invalid/mariadb:11.4"}}}
        updated = await admin.patch(MULTINICOPERATORS, NAME, change, ns)

        async def degraded() -> dict[str, Any] | None:
            status = await cluster.status(NAME)
            ok = status.get("observedGeneration") == updated["metadata"]["generation"]
            return status if ok and status.get("phase") == "Degraded" else None

        status = await eventually(degraded, "status to report the needed recreate", 60)
        assert any("volumeClaimTemplates" in p for p in status["databaseStatus"]["recreateRequired"])
        assert "Needs a recreate" in status["message"]
        after = await cluster.get("StatefulSet", "multinic-mariadb")
        assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"], "never deleted"
        template = after["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        assert template == "1Gi"
        # What may change in place still did.
        assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.invalid/mariadb:11.4"

        # With consent, an orphaning delete + recreate: pods and volumes are adopted, the data volume is the same.
        claim = await cluster.get("PersistentVolumeClaim", DATA_CLAIM)
        assert claim is not None
        consent = {"metadata": {"annotations": {RECREATE_ANNOTATION: "true"}}}
        await admin.patch(MULTINICOPERATORS, NAME, consent, ns)

        async def recreated() -> dict[str, Any] | None:
            sts = await cluster.get("StatefulSet", "multinic-mariadb")
            if sts is None or sts["metadata"]["uid"] == before["metadata"]["uid"]:
                return None
            return sts

        sts = await eventually(recreated, "the StatefulSet recreated", 60)
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "2Gi"
        status = await eventually(lambda: ready(cluster), "Ready after the recreate", 60)
        assert "recreateRequired" not in status["databaseStatus"]
        again = await cluster.get("PersistentVolumeClaim", DATA_CLAIM)
        assert again is not None and again["metadata"]["uid"] == claim["metadata"]["uid"], "same data volume"
        await eventually(lambda: cluster.has_event(NAME, "StatefulSetRecreated"), "StatefulSetRecreated Event")


async def test_operator_command_runs_without_database_settings(
    workload_plane: ControlPlane, admin: KubeClient, tmp_path: Path
) -> None:
    """`python -m multinic_ctrl operator` against a kubeconfig, no DB_* anywhere: probes, a reconcile, SIGTERM."""
    ns = new_namespace(workload_plane)
    cluster = Cluster(admin, ns)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    env |= {"KUBECONFIG": str(workload_plane.kubeconfig_path), "OPERATOR_NAMESPACES": ns, "LOG_FORMAT": "json"}
    log_path = tmp_path / "operator.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "multinic_ctrl", "operator", f"--probe-port={port}", "--probe-address=127.0.0.1"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:

            async def probe(path: str) -> int:
                try:
                    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as r:
                        return r.status
                except aiohttp.ClientError:
                    return 0

            await eventually(lambda: _equals(probe("/readyz"), 200), "/readyz 200", 30)
            assert await probe("/healthz") == 200
            await admin.create(MULTINICOPERATORS, operator_body(NAME, database={"enabled": False}), ns)
            await eventually(lambda: ready(cluster), "installation Ready", 60)
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
            assert 'multinic_operator_reconcile_total{result="success"}' in text
            assert 'multinic_operator_managed_resources_count{kind="Deployment"} 1.0' in text
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("event") == "Starting" and line.get("component") == "operator" for line in lines)
    assert any(line.get("event") == "Stopped" and line.get("exit_code") == 0 for line in lines)


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_a_second_installation_and_an_invalid_spec_are_refused_in_status(
    workload_plane: ControlPlane, admin: KubeClient
) -> None:
    ns = new_namespace(workload_plane)
    cluster = Cluster(admin, ns)
    async with running_operator(workload_plane.kubeconfig_path, (ns,)):
        await admin.create(MULTINICOPERATORS, operator_body(NAME, database={"enabled": False}), ns)
        await eventually(lambda: ready(cluster), "installation Ready", 60)

        second = operator_body("second", database={"enabled": False})
        await admin.create(MULTINICOPERATORS, second, ns)

        async def refused(name: str, reason: str) -> dict[str, Any] | None:
            obj = await cluster.operator(name)
            status = (obj or {}).get("status") or {}
            conditions = {c["type"]: c for c in status.get("conditions", [])}
            ok = status.get("phase") == "Invalid" and conditions.get("Ready", {}).get("reason") == reason
            return status if ok else None

        status = await eventually(lambda: refused("second", "Conflict"), "the second installation refused", 30)
        assert NAME in status["message"]
        await eventually(lambda: cluster.has_event("second", "Conflict"), "a Conflict Event")
        deployment = await cluster.get("Deployment", "multinic-controller")
        assert deployment is not None and deployment["metadata"]["labels"][MANAGED_BY_LABEL] == NAME
        await admin.delete(MULTINICOPERATORS, "second", ns)
        await eventually(lambda: _absent_operator(cluster, "second"), "the second one deleted", 30)
        assert await cluster.get("Deployment", "multinic-controller") is not None, "the first installation stays"

        # Past the CRD schema, the parser still refuses: an inline value for a secret-looking variable.
        bad = {"spec": {"controller": {"env": [{"name": "API_TOKEN", "value": "inline-token-value"}]}}}
        await admin.patch(MULTINICOPERATORS, NAME, bad, ns)
        status = await eventually(lambda: refused(NAME, "InvalidSpec"), "the invalid spec in status", 30)
        assert "spec.controller.env" in status["message"] and "inline-token-value" not in str(status)
        await eventually(lambda: cluster.has_event(NAME, "InvalidSpec"), "an InvalidSpec Event")
        assert all("inline-token-value" not in e.get("message", "") for e in await cluster.events(NAME))
        assert await cluster.get("Deployment", "multinic-controller") is not None, "an invalid spec removes nothing"


async def test_delete_data_on_uninstall_removes_volumes_and_credentials(
    workload_plane: ControlPlane, admin: KubeClient
) -> None:
    ns = new_namespace(workload_plane)
    cluster = Cluster(admin, ns)
    async with running_operator(workload_plane.kubeconfig_path, (ns,)):
        body = operator_body(NAME)
        body["spec"]["database"]["deleteDataOnUninstall"] = True
        await admin.create(MULTINICOPERATORS, body, ns)
        await eventually(lambda: ready(cluster), "installation Ready", 120)
        assert await cluster.get("PersistentVolumeClaim", DATA_CLAIM) is not None
        await admin.delete(MULTINICOPERATORS, NAME, ns)
        await eventually(lambda: _gone(cluster), "the MultiNicOperator deleted", 60)
        for kind, name in [
            ("PersistentVolumeClaim", DATA_CLAIM),
            ("PersistentVolumeClaim", "multinic-mariadb-backup"),
            ("Secret", CREDENTIALS),
            ("Secret", RECOVERY_SECRET),
            ("StatefulSet", "multinic-mariadb"),
        ]:
            await eventually(lambda k=kind, n=name: _absent(cluster, k, n), f"{kind} {name} removed", 30)


async def _absent_operator(cluster: Cluster, name: str) -> bool:
    return await cluster.operator(name) is None


async def test_backup_history_reaches_status_and_metrics(workload_plane: ControlPlane, admin: KubeClient) -> None:
    """The CronJob runs (kwok completes every Job): status and the backup gauges follow its history."""
    ns = new_namespace(workload_plane)
    cluster = Cluster(admin, ns)
    async with running_operator(workload_plane.kubeconfig_path, (ns,)):
        body = operator_body(NAME)
        body["spec"]["database"]["backup"] = {"schedule": "* * * * *"}
        await admin.create(MULTINICOPERATORS, body, ns)

        async def succeeded() -> dict[str, Any] | None:
            status = await cluster.status(NAME)
            conditions = {c["type"]: c for c in status.get("conditions", [])}
            ok = conditions.get("BackupSucceeded", {}).get("status") == "True"
            return status if ok else None

        status = await eventually(succeeded, "a successful backup in status", 150)
        backup = status["backupStatus"]
        assert backup["enabled"] and backup["schedule"] == "* * * * *"
        assert backup["lastScheduleTime"] and backup["lastSuccessfulTime"]
        labels = {"namespace": ns, "name": NAME}
        assert REGISTRY.get_sample_value("multinic_operator_backup_last_status", labels) == 1
        stamp = REGISTRY.get_sample_value("multinic_operator_backup_last_success_timestamp_seconds", labels)
        assert stamp and abs(stamp - time.time()) < 300


async def test_two_replicas_one_leader_and_a_takeover(workload_plane: ControlPlane, admin: KubeClient) -> None:
    """Only the holder of the `multinic-operator` Lease reconciles; when it stops, the standby repairs the drift."""
    ns = new_namespace(workload_plane)
    cluster = Cluster(admin, ns)
    async with (
        running_operator(workload_plane.kubeconfig_path, (ns,), leader_elect=True, leader_election_namespace=ns) as a,
        running_operator(workload_plane.kubeconfig_path, (ns,), leader_elect=True, leader_election_namespace=ns) as b,
    ):
        await admin.create(MULTINICOPERATORS, operator_body(NAME, database={"enabled": False}), ns)
        await eventually(lambda: ready(cluster), "installation Ready", 60)
        electors = [p.service.elector for p in (a, b) if p.service is not None and p.service.elector is not None]
        assert sorted(e.is_leader for e in electors) == [False, True]
        leader, standby = (a, b) if electors[0].is_leader else (b, a)
        assert standby.service is not None and standby.service.controller is not None
        assert standby.service.controller.results["success"] + standby.service.controller.results["requeue_after"] == 0
        await leader.stop()  # releases the Lease
        deployment = await cluster.get("Deployment", "multinic-controller")
        assert deployment is not None
        started = time.monotonic()
        await admin.delete(MANAGED["Deployment"], "multinic-controller", ns)

        async def recreated() -> bool:
            again = await cluster.get("Deployment", "multinic-controller")
            return again is not None and again["metadata"]["uid"] != deployment["metadata"]["uid"]

        await eventually(recreated, "the standby to take over and repair", 30)
        print(f"\nfigures: takeover and repair after the leader stopped: {time.monotonic() - started:.1f}s")


async def test_replicas_handed_over_to_an_autoscaler_keep_their_value(
    workload_plane: ControlPlane, admin: KubeClient
) -> None:
    """`replicasManagedExternally: true`: the operator stops owning spec.replicas without resetting it (a plain
    apply without the field would remove it and the apiserver would default it to 1), and never corrects it again."""
    ns = new_namespace(workload_plane)
    cluster = Cluster(admin, ns)
    async with running_operator(workload_plane.kubeconfig_path, (ns,)):
        await admin.create(MULTINICOPERATORS, operator_body(NAME, database={"enabled": False}), ns)
        await eventually(lambda: ready(cluster), "installation Ready", 60)
        change = {"spec": {"controller": {"replicasManagedExternally": True}}}
        await admin.patch(MULTINICOPERATORS, NAME, change, ns)
        await eventually(lambda: cluster.has_event(NAME, "ReplicasHandedOver"), "the hand-over Event", 30)
        deployment = await cluster.get("Deployment", "multinic-controller")
        assert deployment is not None and deployment["spec"]["replicas"] == 2
        assert not owns_field(deployment, FIELD_MANAGER, "spec", "replicas")

        # The "autoscaler" scales; the operator leaves it, also when it applies other changes.
        await admin.patch(MANAGED["Deployment"], "multinic-controller", {"spec": {"replicas": 4}}, ns)
        new_image = "registry.invalid/multinic/controller:v3"
        updated = await admin.patch(MULTINICOPERATORS, NAME, {"spec": {"controller": {"image": new_image}}}, ns)
        status = await eventually(lambda: ready(cluster, updated["metadata"]["generation"]), "the new image", 60)
        assert status["controllerStatus"]["ready"] == "4/4"
        deployment = await cluster.get("Deployment", "multinic-controller")
        assert deployment is not None and deployment["spec"]["replicas"] == 4
