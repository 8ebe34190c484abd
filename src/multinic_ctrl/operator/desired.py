"""MultiNicOperator spec → the Kubernetes objects of one installation (pure).

Invariants:

* **deterministic** - the same spec, owner and RBAC template give the same list of plain dicts, in apply order
  (identity and RBAC, then the database and its Services, then backups, then the controller that needs them);
* **complete labelling** - every object carries the protection and ownership labels (`names.labels`) and an
  owner reference where Kubernetes honours one (`names.object_meta` says where and why not);
* **no secret in any of them** - the credentials Secret is built separately (`credentials.credentials_secret`)
  because it is created once and never re-applied; everything here refers to passwords by Secret name and key.

`MANAGED_KINDS` lists what the reconciler must watch and clean up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import backup_objects, controller_objects, database_objects
from .names import Owner
from .rbac import RbacTemplate, desired_rbac
from .spec import OperatorSpec

# (apiVersion, kind, namespaced) of everything the operator creates.
MANAGED_KINDS: tuple[tuple[str, str, bool], ...] = (
    ("v1", "ServiceAccount", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", False),
    ("rbac.authorization.k8s.io/v1", "Role", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", True),
    ("v1", "Secret", True),
    ("v1", "Service", True),
    ("v1", "PersistentVolumeClaim", True),
    ("apps/v1", "StatefulSet", True),
    ("batch/v1", "CronJob", True),
    ("apps/v1", "Deployment", True),
)


def desired_objects(spec: OperatorSpec, owner: Owner, rbac: RbacTemplate) -> list[dict[str, Any]]:
    """Every object of the installation except the credentials Secret, in apply order."""
    objects = desired_rbac(owner, rbac)
    if spec.database.enabled:
        objects += [
            database_objects.headless_service(owner),
            database_objects.client_service(owner),
            database_objects.statefulset(spec, owner),
        ]
        claim = backup_objects.persistent_volume_claim(spec, owner)
        job = backup_objects.cronjob(spec, owner)
        objects += [o for o in (claim, job) if o is not None]
    objects += [
        controller_objects.deployment(spec, owner, rbac.service_account),
        controller_objects.service(spec, owner),
    ]
    return objects


def object_key(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(apiVersion, kind, namespace, name): identifies an object among desired and live ones."""
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
