"""The controller's RBAC objects for one installation, derived from manifests/rbac/controller.yaml (pure, apart
from `packaged_template` reading the packaged manifest).

Invariants:

* **one source of truth** - the rules are never written here: `controller-rbac.yaml` in this package is a
  symbolic link to manifests/rbac/controller.yaml (the file tests/e2e/test_rbac.py proves least-privilege on a
  real apiserver), parsed at run time and copied rule for rule; trimming a verb there trims it here;
* **only the installation's own identity is granted anything** - every binding's subjects are replaced by the
  installation's ServiceAccount, and every roleRef is re-pointed at the installation's own role;
* **no collisions** - cluster-scoped names get the installation's namespace appended (`names.Owner.cluster_name`),
  namespaced objects move into the installation's namespace.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from .names import CONTROLLER, Owner, object_meta

RBAC_API = "rbac.authorization.k8s.io/v1"
_CLUSTER_KINDS = ("ClusterRole", "ClusterRoleBinding")
_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
PACKAGED_MANIFEST = "controller-rbac.yaml"


class RbacManifestError(ValueError):
    """The RBAC manifest does not have the expected shape (a packaging or editing mistake, not user input)."""


@dataclass(frozen=True)
class RbacTemplate:
    service_account: str
    documents: tuple[Mapping[str, Any], ...]  # roles and bindings, in manifest order

    def rules(self, kind: str) -> dict[str, list[dict[str, Any]]]:
        """Role (or ClusterRole) name → its rules, as written in the manifest."""
        return {d["metadata"]["name"]: list(d.get("rules") or []) for d in self.documents if d["kind"] == kind}


def parse_manifest(text: str) -> RbacTemplate:
    documents = [d for d in yaml.safe_load_all(text) if d]
    accounts = [d for d in documents if d.get("kind") == "ServiceAccount"]
    if len(accounts) != 1:
        raise RbacManifestError(f"expected one ServiceAccount, found {len(accounts)}")
    kept: list[Mapping[str, Any]] = []
    for doc in documents:
        kind = doc.get("kind")
        if kind not in _KINDS:
            raise RbacManifestError(f"unexpected kind {kind!r}")
        if kind in ("ClusterRole", "Role") and not isinstance(doc.get("rules"), list):
            raise RbacManifestError(f"{kind} {doc.get('metadata', {}).get('name')} has no rules")
        if kind.endswith("Binding") and not isinstance(doc.get("roleRef"), Mapping):
            raise RbacManifestError(f"{kind} {doc.get('metadata', {}).get('name')} has no roleRef")
        if kind != "ServiceAccount":
            kept.append(doc)
    return RbacTemplate(accounts[0]["metadata"]["name"], tuple(kept))


@functools.cache
def packaged_template() -> RbacTemplate:
    """The controller RBAC shipped with this package (read once)."""
    return parse_manifest(
        resources.files("multinic_ctrl.operator").joinpath(PACKAGED_MANIFEST).read_text(encoding="utf-8")
    )


def _name(owner: Owner, kind: str, name: str) -> str:
    return owner.cluster_name(name) if kind in _CLUSTER_KINDS else name


def service_account(owner: Owner, template: RbacTemplate) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": object_meta(owner, template.service_account, CONTROLLER, "controller"),
    }


def desired_rbac(owner: Owner, template: RbacTemplate) -> list[dict[str, Any]]:
    """ServiceAccount, roles and bindings of the installation's controller."""
    objects: list[dict[str, Any]] = [service_account(owner, template)]
    subject = {"kind": "ServiceAccount", "name": template.service_account, "namespace": owner.namespace}
    for doc in template.documents:
        kind = doc["kind"]
        obj: dict[str, Any] = {
            "apiVersion": RBAC_API,
            "kind": kind,
            "metadata": object_meta(
                owner,
                _name(owner, kind, doc["metadata"]["name"]),
                CONTROLLER,
                "rbac",
                cluster_scoped=kind in _CLUSTER_KINDS,
            ),
        }
        if kind.endswith("Binding"):
            ref = doc["roleRef"]
            obj["roleRef"] = {
                "apiGroup": ref["apiGroup"],
                "kind": ref["kind"],
                "name": _name(owner, ref["kind"], ref["name"]),
            }
            obj["subjects"] = [dict(subject)]
        else:
            obj["rules"] = copy.deepcopy(list(doc["rules"]))
        objects.append(obj)
    return objects


def rules_by_role(objects: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(kind, name) → rules of the roles among built objects (for tests and status)."""
    return {
        (o["kind"], o["metadata"]["name"]): list(o["rules"]) for o in objects if o["kind"] in ("Role", "ClusterRole")
    }
