"""Where the operator's objects live in the API (plain data; `desired.MANAGED_KINDS` lists the kinds).

Secrets are watched as metadata only (`SECRET_METADATA` + `secret_identity`): the operator needs to know that its
credentials Secret exists and who owns it, never to hold its content in memory; the content is read with a GET
only when the Secret has to be (re)created.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multinic_ctrl.kube import JsonObj, Resource

from .desired import MANAGED_KINDS
from .names import API_GROUP

MULTINICOPERATORS = Resource(API_GROUP, "v1alpha1", "multinicoperators", True, "MultiNicOperator")
JOBS = Resource("batch", "v1", "jobs", True, "Job")
SECRETS = Resource("", "v1", "secrets", True, "Secret")
SECRET_METADATA = Resource("", "v1", "secrets", True, "Secret", metadata_only=True)

_PLURALS = {
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "Secret": "secrets",
    "Service": "services",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "StatefulSet": "statefulsets",
    "CronJob": "cronjobs",
    "Deployment": "deployments",
}


def _resource(api_version: str, kind: str, namespaced: bool) -> Resource:
    group, _, version = api_version.rpartition("/")
    return Resource(group, version, _PLURALS[kind], namespaced, kind)


MANAGED: dict[str, Resource] = {kind: _resource(api, kind, ns) for api, kind, ns in MANAGED_KINDS}
"""Kind → Resource of everything the operator applies."""


def resource_of(obj: Mapping[str, Any]) -> Resource:
    return MANAGED[str(obj.get("kind"))]


def watched(kind: str) -> Resource:
    """What the informer of `kind` lists and watches (Secrets: metadata only)."""
    return SECRET_METADATA if kind == "Secret" else MANAGED[kind]


def secret_identity(obj: JsonObj) -> JsonObj:
    """Informer transform for Secrets: identity, labels and owners only (annotations may hold a copy of the data:
    `kubectl apply` stores the whole object in `last-applied-configuration`)."""
    meta = obj.get("metadata") or {}
    kept = {
        k: meta[k]
        for k in ("name", "namespace", "uid", "resourceVersion", "labels", "ownerReferences", "deletionTimestamp")
        if k in meta
    }
    return {"apiVersion": "v1", "kind": "Secret", "metadata": kept}
