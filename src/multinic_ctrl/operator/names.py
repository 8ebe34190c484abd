"""Names, labels and owner references of everything the operator manages (pure).

Invariants:

* **one installation per namespace** - namespaced objects have fixed names (`multinic-controller`,
  `multinic-mariadb`, ...), as MISSION.md's `kubectl edit deployment multinic-controller` expects; a second
  MultiNicOperator in the same namespace is a conflict the reconciler must report (the
  `managed-by-operator` label says which one owns an object). Cluster-scoped objects carry the namespace in
  their name, so installations in different namespaces never collide;
* **every object is findable and protected** - each carries `multinic.example.com/protected=true`,
  `multinic.example.com/managed-by-operator=<name>`, `...-namespace=<namespace>` (the only way back to the owner
  from a cluster-scoped object) and the `app.kubernetes.io` labels;
* **owner references only where Kubernetes honours them** - see `object_meta`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .validation import DNS1123_LABEL, DNS1123_SUBDOMAIN, SpecError, full, show

API_GROUP = "multinic.example.com"
API_VERSION = f"{API_GROUP}/v1alpha1"
KIND = "MultiNicOperator"
FIELD_MANAGER = "multinic-operator"

PROTECTED_LABEL = f"{API_GROUP}/protected"
MANAGED_BY_LABEL = f"{API_GROUP}/managed-by-operator"
MANAGED_BY_NAMESPACE_LABEL = f"{API_GROUP}/managed-by-operator-namespace"

CONTROLLER = "multinic-controller"
DATABASE = "multinic-mariadb"
DATABASE_HEADLESS = "multinic-mariadb-headless"
CREDENTIALS_SECRET = "multinic-mariadb-credentials"  # noqa: S105 - an object name
BACKUP = "multinic-mariadb-backup"

DATABASE_PORT = 3306


@dataclass(frozen=True)
class Owner:
    """The MultiNicOperator object the desired state is built for."""

    name: str
    namespace: str
    uid: str
    generation: int = 0

    def reference(self) -> dict[str, Any]:
        """An ownerReference: the garbage collector deletes the dependant with its owner; `controller: true`
        lets owned-object watches map events back to this MultiNicOperator."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    @property
    def trigger_from(self) -> str:
        return f"{self.namespace}/{self.name}"

    def cluster_name(self, base: str) -> str:
        """Name of a cluster-scoped object of this installation (unique per namespace)."""
        return f"{base}-{self.namespace}"


def owner_from_object(obj: Mapping[str, Any]) -> Owner:
    """The Owner of a MultiNicOperator object; its name must also be a valid label value (63 characters)."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise SpecError("metadata: is missing")
    name, namespace, uid = meta.get("name"), meta.get("namespace"), meta.get("uid")
    if not isinstance(name, str) or len(name) > 63 or not full(DNS1123_SUBDOMAIN, name):
        raise SpecError(f"metadata.name: {show(name)} must be a DNS-1123 name of at most 63 characters")
    if not isinstance(namespace, str) or not full(DNS1123_LABEL, namespace) or len(namespace) > 63:
        raise SpecError(f"metadata.namespace: {show(namespace)} is not a namespace name")
    if not isinstance(uid, str) or not full(r"[0-9a-fA-F-]{1,64}", uid):
        raise SpecError("metadata.uid: is missing or malformed")
    generation = meta.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int):
        generation = 0
    return Owner(name, namespace, uid, generation)


def selector_labels(app: str) -> dict[str, str]:
    """The immutable part: selectors of Deployments, StatefulSets and Services use only these."""
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "multinic"}


def labels(owner: Owner, app: str, component: str) -> dict[str, str]:
    return {
        **selector_labels(app),
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        PROTECTED_LABEL: "true",
        MANAGED_BY_LABEL: owner.name,
        MANAGED_BY_NAMESPACE_LABEL: owner.namespace,
    }


def object_meta(
    owner: Owner, name: str, app: str, component: str, *, cluster_scoped: bool = False, owned: bool = True
) -> dict[str, Any]:
    """Metadata of a managed object.

    An ownerReference is added only when `owned` and the object is namespaced:

    * cluster-scoped objects (ClusterRole, ClusterRoleBinding) cannot name a namespaced owner - the garbage
      collector treats such a reference as unresolvable (event `OwnerRefInvalidNamespace`) and never collects
      the object - so the finalizer deletes them, found by the `managed-by-operator` labels;
    * data-bearing objects (the credentials Secret, the backup PVC) are passed `owned=False` unless
      `spec.database.deleteDataOnUninstall` is true: with an owner reference, deleting the MultiNicOperator
      would let the garbage collector delete the data too.
    """
    meta: dict[str, Any] = {"name": name, "labels": labels(owner, app, component)}
    if not cluster_scoped:
        meta["namespace"] = owner.namespace
        if owned:
            meta["ownerReferences"] = [owner.reference()]
    return meta
