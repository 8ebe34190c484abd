"""manifests/ is the whole installation (`kubectl apply -k manifests/`), and the real apiserver accepts all of it.

`kubectl kustomize manifests/` builds; every object passes a server-side dry run (namespaced objects moved into
this test's namespace, cluster-scoped ones renamed with a suffix - CRDs keep their names, which their spec fixes;
the session's CRDs are identical, so their dry run changes nothing either); the operator's pod template passes Pod
Security `restricted` in a namespace that enforces it; the Deployment carries what the operator needs (webhook
port 9443 named `webhook` behind the webhook Service, probes on 8082, the downward-API identity).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from multinic_ctrl.operator.podsecurity import restricted_violations
from tests.support.control_plane import ControlPlane

pytestmark = pytest.mark.e2e

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
SYSTEM = "multinic-system"
RESTRICTED = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}


def load(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module")
def built(control_plane: ControlPlane) -> list[dict[str, Any]]:
    return load(control_plane.kubectl("kustomize", str(MANIFESTS)).stdout)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} found"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = one(docs, "Deployment", "multinic-operator")["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    return cast(dict[str, Any], spec["containers"][0])


def test_kustomization_is_the_whole_installation(built: list[dict[str, Any]]) -> None:
    names = sorted((d["kind"], d["metadata"]["name"]) for d in built)
    assert names == sorted(
        [
            ("Namespace", SYSTEM),
            ("CustomResourceDefinition", "multinicoperators.multinic.example.com"),
            ("CustomResourceDefinition", "openstackconfigs.multinic.example.com"),
            ("ServiceAccount", "multinic-operator"),
            ("ClusterRole", "multinic-operator"),
            ("ClusterRoleBinding", "multinic-operator"),
            ("Role", "multinic-operator-webhook-tls"),
            ("RoleBinding", "multinic-operator-webhook-tls"),
            ("Deployment", "multinic-operator"),
            ("Service", "multinic-operator-webhook"),
            ("NetworkPolicy", "multinic-ingress"),
            ("NetworkPolicy", "multinic-egress"),
            ("NetworkPolicy", "multinic-egress-openstack"),
        ]
    ), "samples stay out; everything else is in"
    namespaced = [
        d
        for d in built
        if d["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding")
    ]
    assert {d["metadata"].get("namespace") for d in namespaced} == {SYSTEM}
    labels = one(built, "Namespace")["metadata"]["labels"]
    assert RESTRICTED.items() <= labels.items()
    # The files are the ones kubectl apply -f manifests/rbac/ and the operator docs name: one source each.
    shipped = {(d["kind"], d["metadata"]["name"]) for d in load((MANIFESTS / "rbac" / "operator.yaml").read_text())}
    assert shipped <= set(names)
    # Every manifest file is in the kustomization but the samples and the controller's RBAC (the operator
    # installs that one per MultiNicOperator; the namespaced overlay is for a controller run by hand).
    listed = set(yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())["resources"])
    files = {
        str(f.relative_to(MANIFESTS))
        for f in MANIFESTS.rglob("*.yaml")
        if f.parts[len(MANIFESTS.parts)] != "samples" and f.name != "kustomization.yaml"
    }
    assert listed == files - {
        "rbac/controller.yaml",
        "rbac/namespaced/controller.yaml",
        "rbac/namespaced/watched-namespaces.yaml",
    }


def test_deployment_gives_the_operator_what_it_needs(built: list[dict[str, Any]]) -> None:
    deployment = one(built, "Deployment", "multinic-operator")
    pod = deployment["spec"]["template"]
    c = container(built)
    assert 1 <= deployment["spec"]["replicas"] <= 2
    assert c["image"] == "multinic:v1alpha1" and c["args"] == ["operator"]
    env = {e["name"]: e for e in c["env"]}
    assert env["LEADER_ELECT"]["value"] == "true", "more than one replica needs leader election"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["SERVICE_ACCOUNT_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["webhook"] == 9443
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == 8082
    assert {"requests", "limits"} <= c["resources"].keys()
    assert 5 <= pod["spec"]["terminationGracePeriodSeconds"] <= 60
    assert pod["spec"]["serviceAccountName"] == one(built, "ServiceAccount")["metadata"]["name"]
    assert restricted_violations(pod["spec"]) == []
    ctx = c["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert pod["spec"]["securityContext"]["runAsUser"] > 0
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The webhook Service reaches exactly these pods on the webhook port.
    service = one(built, "Service", "multinic-operator-webhook")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "multinic-operator"
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(443, 9443)]


def test_network_policies_cover_what_the_installation_talks_to(built: list[dict[str, Any]]) -> None:
    policies = [d for d in built if d["kind"] == "NetworkPolicy"]
    assert all(p["spec"]["podSelector"] == {} for p in policies), "every pod of the namespace"
    ingress = [rule for p in policies for rule in p["spec"].get("ingress", [])]
    assert {"from": [{"podSelector": {}}]} in ingress, "ingress from the namespace"
    assert any(r.get("ports") == [{"protocol": "TCP", "port": 9443}] and "from" not in r for r in ingress)
    egress_ports = {
        (port["protocol"], port["port"])
        for p in policies
        for rule in p["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443), ("TCP", 3306)} <= egress_ports
    assert {("TCP", 5000), ("TCP", 8774), ("TCP", 9696)} <= egress_ports, "OpenStack"


def relocate(docs: list[dict[str, Any]], namespace: str, suffix: str) -> list[dict[str, Any]]:
    """Namespaced objects into `namespace`; cluster-scoped ones (but CRDs) renamed with `suffix`."""
    moved = cast(list[dict[str, Any]], yaml.safe_load(yaml.safe_dump(docs)))
    for doc in moved:
        meta = doc["metadata"]
        if "namespace" in meta:
            meta["namespace"] = namespace
        elif doc["kind"] != "CustomResourceDefinition":
            meta["name"] += suffix
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] += suffix
        for subject in doc.get("subjects") or []:
            if subject.get("namespace") == SYSTEM:
                subject["namespace"] = namespace
    return moved


def test_every_object_passes_server_side_dry_run(
    control_plane: ControlPlane, multinic_crds: list[str], namespace: str, built: list[dict[str, Any]]
) -> None:
    moved = relocate(built, namespace, f"-{namespace}")
    out = control_plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=test-manifests",
        "--dry-run=server",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(moved),
    )
    assert out.stdout.count("(server dry run)") == len(moved), out.stdout
    # Nothing was created.
    for doc in moved:
        if doc["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert control_plane.kubectl("get", doc["kind"].lower(), doc["metadata"]["name"], check=False).returncode
    assert (
        "No resources"
        in control_plane.kubectl("get", "deployments,serviceaccounts,networkpolicies", "-n", namespace).stderr
    )


@pytest.fixture
def restricted_namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"t-pss-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in RESTRICTED.items()))
    # The pod's ServiceAccount must exist for admission (no controller-manager creates any here).
    control_plane.kubectl("-n", name, "create", "serviceaccount", "multinic-operator")
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_pod_template_passes_pod_security_restricted(
    control_plane: ControlPlane, restricted_namespace: str, built: list[dict[str, Any]]
) -> None:
    template = one(built, "Deployment", "multinic-operator")["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-template", "namespace": restricted_namespace, **template["metadata"]},
        "spec": template["spec"],
    }
    done = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(pod))
    assert "(server dry run)" in done.stdout
    assert "would violate" not in done.stderr, done.stderr
    # The namespace really enforces: the same pod as root is refused.
    pod["spec"] = yaml.safe_load(yaml.safe_dump(pod["spec"]))
    pod["spec"]["securityContext"].update(runAsUser=0, runAsNonRoot=False)
    for c in pod["spec"]["containers"]:
        c["securityContext"].pop("runAsUser", None)
        c["securityContext"]["runAsNonRoot"] = False
    refused = control_plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(pod), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr
