"""The operator's identity under OwnerReferencesPermissionEnforcement (off by default, on in many hardened
clusters): setting `blockOwnerDeletion` on an owner reference needs `update` on the owner's `finalizers`
subresource. A control plane of its own with the plugin enabled runs the operator as its ServiceAccount with
exactly manifests/rbac/operator.yaml through install, a repair and an uninstall; the audit log shows no request
denied and every request covered by a grant of the manifest. A ServiceAccount holding the same rules minus
`multinicoperators/finalizers` is refused, which proves the rule is needed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from multinic_ctrl.kube import ApiError, KubeClient
from multinic_ctrl.kube.apply import server_side_apply
from multinic_ctrl.operator.desired import desired_objects
from multinic_ctrl.operator.names import FIELD_MANAGER, Owner
from multinic_ctrl.operator.rbac import packaged_template
from multinic_ctrl.operator.resources import MANAGED, MULTINICOPERATORS
from multinic_ctrl.operator.spec import parse_spec
from tests.e2e.operator_harness import Cluster, ensure_crds, eventually, operator_body, running_operator
from tests.support.control_plane import ControlPlane, locate_assets

pytestmark = pytest.mark.e2e

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac" / "operator.yaml"
SA_USER = "system:serviceaccount:multinic-system:multinic-operator"
NAME = "production-system"


def rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    return list(role["rules"])


def covered(rule_list: list[dict[str, Any]], event: dict[str, Any]) -> bool:
    ref = event.get("objectRef") or {}
    resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    for rule in rule_list:
        if ref.get("apiGroup", "") not in rule["apiGroups"] or resource not in rule["resources"]:
            continue
        if event["verb"] not in rule["verbs"]:
            continue
        if rule.get("resourceNames") and ref.get("name") not in rule["resourceNames"]:
            continue
        return True
    return False


def _request(event: dict[str, Any]) -> tuple[str, str, str]:
    ref = event["objectRef"]
    return (event["verb"], ref.get("resource", ""), ref.get("subresource", ""))


@pytest.fixture
def enforcing_plane() -> Any:
    plane = ControlPlane(
        locate_assets(), extra_apiserver_args=["--enable-admission-plugins=OwnerReferencesPermissionEnforcement"]
    )
    with plane:
        yield plane


async def test_operator_identity_under_owner_reference_enforcement(enforcing_plane: ControlPlane) -> None:
    plane = enforcing_plane
    ensure_crds(plane)
    plane.kubectl("create", "namespace", "multinic-system")
    plane.kubectl("create", "namespace", "install")
    plane.kubectl("apply", f"--filename={RBAC}")
    kubeconfig = plane.service_account_kubeconfig("multinic-system", "multinic-operator", create=False)
    async with await KubeClient.from_config(str(plane.kubeconfig_path)) as admin:
        cluster = Cluster(admin, "install")
        async with running_operator(kubeconfig, ("install",), leader_elect=True):
            await admin.create(MULTINICOPERATORS, operator_body(NAME), "install")

            async def installed() -> bool:
                status = await cluster.status(NAME)
                cronjob = await cluster.get("CronJob", "multinic-mariadb-backup")
                return bool(status.get("observedGeneration")) and cronjob is not None

            await eventually(installed, "the installation applied", 60)
            deployment = await cluster.get("Deployment", "multinic-controller")
            assert deployment is not None
            assert deployment["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True
            await admin.delete(MANAGED["Deployment"], "multinic-controller", "install")

            async def recreated() -> bool:
                again = await cluster.get("Deployment", "multinic-controller")
                return again is not None and again["metadata"]["uid"] != deployment["metadata"]["uid"]

            await eventually(recreated, "the Deployment recreated", 30)
            await admin.delete(MULTINICOPERATORS, NAME, "install")

            async def gone() -> bool:
                return await cluster.operator(NAME) is None

            await eventually(gone, "the MultiNicOperator deleted (finalizer released)", 60)
            assert await cluster.get("ClusterRole", "multinic-controller-install") is None
        time.sleep(1)  # the audit log is written asynchronously

        docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
        granted = rules(docs)
        mine = [e for e in plane.audit_events() if (e.get("user") or {}).get("username") == SA_USER]
        latest = {e["auditID"]: e for e in mine if e.get("objectRef")}
        denied = [
            (e["verb"], e["requestURI"]) for e in latest.values() if (e.get("responseStatus") or {}).get("code") == 403
        ]
        assert not denied
        uncovered = sorted({_request(e) for e in latest.values() if not covered(granted, e)})
        assert not uncovered

        # The finalizers rule is needed: the same rules without it cannot set blockOwnerDeletion.
        without = [r for r in granted if r["resources"] != ["multinicoperators/finalizers"]]
        assert len(without) == len(granted) - 1
        plane.kubectl("-n", "multinic-system", "create", "serviceaccount", "no-finalizers")
        reduced = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "no-finalizers"},
            "rules": without,
        }
        plane.kubectl("apply", "--filename=-", stdin=yaml.safe_dump(reduced))
        plane.kubectl("create", "clusterrolebinding", "no-finalizers", "--clusterrole=no-finalizers",
                      "--serviceaccount=multinic-system:no-finalizers")  # fmt: skip
        await admin.create(MULTINICOPERATORS, operator_body("probe"), "install")
        probe = await cluster.operator("probe")
        assert probe is not None
        owner = Owner("probe", "install", probe["metadata"]["uid"], 1)
        service = next(
            o
            for o in desired_objects(parse_spec(operator_body("probe")["spec"]), owner, packaged_template())
            if o["kind"] == "Service"
        )
        reduced_kubeconfig = plane.service_account_kubeconfig("multinic-system", "no-finalizers", create=False)
        async with await KubeClient.from_config(str(reduced_kubeconfig)) as weak:
            with pytest.raises(ApiError) as refused:
                await server_side_apply(weak, MANAGED["Service"], service, field_manager=FIELD_MANAGER)
        assert refused.value.status == 403 and "finalizers" in refused.value.message
