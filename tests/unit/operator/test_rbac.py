"""The installation's RBAC comes rule for rule from manifests/rbac/controller.yaml, granted only to its own
ServiceAccount."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from multinic_ctrl.operator import rbac
from multinic_ctrl.operator.names import MANAGED_BY_LABEL

from .support import OWNER

MANIFEST = Path(__file__).resolve().parents[3] / "manifests" / "rbac" / "controller.yaml"


def manifest_documents() -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]


def test_the_packaged_manifest_is_the_repository_manifest() -> None:
    packaged = Path(rbac.__file__).with_name(rbac.PACKAGED_MANIFEST)
    assert packaged.read_text(encoding="utf-8") == MANIFEST.read_text(encoding="utf-8")
    assert packaged.is_symlink() and packaged.resolve() == MANIFEST.resolve()


def test_every_role_of_the_manifest_is_built_with_the_same_rules() -> None:
    objects = rbac.desired_rbac(OWNER, rbac.packaged_template())
    built = rbac.rules_by_role(objects)
    manifest_roles = [d for d in manifest_documents() if d["kind"] in ("Role", "ClusterRole")]
    assert manifest_roles, "the manifest has roles"
    assert len(built) == len(manifest_roles)
    for doc in manifest_roles:
        meta = doc["metadata"]
        assert isinstance(meta, dict)
        name = OWNER.cluster_name(meta["name"]) if doc["kind"] == "ClusterRole" else meta["name"]
        assert built[(str(doc["kind"]), name)] == doc["rules"]


def test_bindings_grant_only_the_installations_service_account() -> None:
    objects = rbac.desired_rbac(OWNER, rbac.packaged_template())
    roles = {(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in ("Role", "ClusterRole")}
    bindings = [o for o in objects if o["kind"].endswith("Binding")]
    assert len(bindings) == len([d for d in manifest_documents() if str(d["kind"]).endswith("Binding")])
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "multinic-controller", "namespace": "multinic-system"}
        ]
        ref = binding["roleRef"]
        assert (ref["kind"], ref["name"]) in roles
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"


def test_service_account_and_labels() -> None:
    objects = rbac.desired_rbac(OWNER, rbac.packaged_template())
    assert objects[0]["kind"] == "ServiceAccount" and objects[0]["metadata"]["name"] == "multinic-controller"
    assert all(o["metadata"]["labels"][MANAGED_BY_LABEL] == OWNER.name for o in objects)


ROLE = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules:
  - {apiGroups: [""], resources: [secrets], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects:
  - {kind: ServiceAccount, name: sa, namespace: elsewhere}
  - {kind: Group, name: "system:authenticated"}
"""


def test_rules_follow_the_manifest_text() -> None:
    """No rule is hard-coded: trimming a verb in the manifest trims it in the built ClusterRole."""
    full = rbac.desired_rbac(OWNER, rbac.parse_manifest(ROLE))
    trimmed = rbac.desired_rbac(OWNER, rbac.parse_manifest(ROLE.replace("get, list, watch", "get")))
    assert rbac.rules_by_role(full)[("ClusterRole", "reader-multinic-system")][0]["verbs"] == ["get", "list", "watch"]
    assert rbac.rules_by_role(trimmed)[("ClusterRole", "reader-multinic-system")][0]["verbs"] == ["get"]


def test_foreign_subjects_of_the_manifest_are_never_granted() -> None:
    (binding,) = [o for o in rbac.desired_rbac(OWNER, rbac.parse_manifest(ROLE)) if o["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sa", "namespace": "multinic-system"}]


def test_built_rules_are_copies() -> None:
    template = rbac.parse_manifest(ROLE)
    built = rbac.desired_rbac(OWNER, template)
    rbac.rules_by_role(built)[("ClusterRole", "reader-multinic-system")][0]["verbs"].append("delete")
    assert template.rules("ClusterRole")["reader"][0]["verbs"] == ["get", "list", "watch"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kind: ClusterRole\nmetadata: {name: x}\nrules: []\n", "one ServiceAccount"),
        ("kind: ServiceAccount\nmetadata: {name: a}\n---\nkind: ServiceAccount\nmetadata: {name: b}\n", "one Service"),
        ("kind: ServiceAccount\nmetadata: {name: a}\n---\nkind: Deployment\nmetadata: {name: d}\n", "unexpected kind"),
        ("kind: ServiceAccount\nmetadata: {name: a}\n---\nkind: Role\nmetadata: {name: r}\n", "no rules"),
        ("kind: ServiceAccount\nmetadata: {name: a}\n---\nkind: RoleBinding\nmetadata: {name: r}\n", "no roleRef"),
    ],
)
def test_malformed_manifests_are_refused(text: str, problem: str) -> None:
    with pytest.raises(rbac.RbacManifestError, match=problem):
        rbac.parse_manifest(text)
