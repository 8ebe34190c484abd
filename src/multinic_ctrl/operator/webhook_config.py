"""The desired ValidatingWebhookConfiguration `vprotection.multinic.example.com` (pure).

Invariants (why `failurePolicy: Fail` cannot lock anyone out):

* **tightly scoped** - the main webhook sees only objects labelled `multinic.example.com/protected=true` in the old
  or the new object (`objectSelector`), outside `kube-system` (`namespaceSelector`), for the managed kinds and
  CREATE/UPDATE/DELETE; `timeoutSeconds: 5`, `sideEffects: None` (dry runs are judged too),
  `admissionReviewVersions: [v1]`, `matchPolicy: Equivalent` (a request through another API version of the same
  resource is still caught);
* **the operator is never behind its own webhook** - `matchConditions` exempt the operator's ServiceAccount(s), the
  garbage collector and the namespace controller in the apiserver itself: while the endpoint is down ordinary users
  are denied (fail closed) but the operator still repairs, and cascading and namespace deletion complete;
* **`deployments/scale` and `statefulsets/scale` are covered** by a second webhook,
  `vprotection-scale.multinic.example.com`: a Scale object carries no labels, so an `objectSelector` would never
  match it; instead `matchConditions` select the managed workload names (`admission.SCALE_TARGETS`) and the
  decision checks that the namespace has an installation. Its denials therefore name
  `vprotection-scale.multinic.example.com`; and while the endpoint is down, scaling a Deployment called
  `multinic-controller` (StatefulSet `multinic-mariadb`) fails in every namespace but `kube-system`;
* **cluster-scoped, so no owner reference** - a namespaced MultiNicOperator cannot own it; the operator deletes it
  with the last MultiNicOperator (finalizer) and recreates it from a watch if anyone deletes it (the documented
  break-glass path) - the apiserver never sends webhook configurations to webhooks, so nothing can block that.

`drifted(live, desired)` tells whether a live configuration still holds everything desired (an edited `caBundle`,
a removed rule) - fields the apiserver defaults are ignored.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .admission import ALWAYS_ALLOWED_USERS, SCALE_TARGETS
from .names import API_GROUP, PROTECTED_LABEL
from .webhook_server import PATH

CONFIGURATION_NAME = f"vprotection.{API_GROUP}"
WEBHOOK_NAME = f"vprotection.{API_GROUP}"
SCALE_WEBHOOK_NAME = f"vprotection-scale.{API_GROUP}"
TIMEOUT_SECONDS = 5
OPERATIONS = ["CREATE", "UPDATE", "DELETE"]

# (apiGroup, resources) the main webhook judges: every kind in desired.MANAGED_KINDS, plus ConfigMaps.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("apps", ("deployments", "statefulsets")),
    ("", ("services", "secrets", "serviceaccounts", "configmaps", "persistentvolumeclaims")),
    ("batch", ("cronjobs",)),
    ("rbac.authorization.k8s.io", ("roles", "rolebindings", "clusterroles", "clusterrolebindings")),
)

DEFAULT_NAMESPACE_SELECTOR: dict[str, Any] = {
    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]
}


@dataclass(frozen=True)
class ServiceRef:
    """clientConfig.service: the operator's webhook Service."""

    namespace: str
    name: str
    port: int = 443


def _cel_strings(values: Sequence[str]) -> str:
    return "[" + ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values) + "]"


def exemption_condition(operator_users: Sequence[str]) -> dict[str, str]:
    """matchCondition: the webhook is called only for requests NOT made by the exempt identities."""
    exempt = sorted({*operator_users, *ALWAYS_ALLOWED_USERS})
    return {
        "name": "not-operator-gc-or-namespace-controller",
        "expression": f"!(request.userInfo.username in {_cel_strings(exempt)})",
    }


def scale_target_condition() -> dict[str, str]:
    targets = " || ".join(
        f"(request.resource.resource == '{resource}' && request.name == '{name}')"
        for resource, name in sorted(SCALE_TARGETS)
    )
    return {"name": "managed-workload", "expression": targets}


def _client_config(client: ServiceRef | str, ca_bundle: bytes) -> dict[str, Any]:
    config: dict[str, Any] = {"caBundle": base64.b64encode(ca_bundle).decode()}
    if isinstance(client, ServiceRef):
        config["service"] = {"namespace": client.namespace, "name": client.name, "path": PATH, "port": client.port}
    else:
        if not client.startswith("https://"):
            raise ValueError("a webhook url must be https://")
        config["url"] = client
    return config


def _rules(spec: Sequence[tuple[str, Sequence[str]]], operations: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"apiGroups": [group], "apiVersions": ["*"], "resources": list(resources), "operations": list(operations)}
        for group, resources in spec
    ]


def desired_configuration(
    *,
    ca_bundle: bytes,
    client: ServiceRef | str,
    operator_users: Sequence[str],
    name: str = CONFIGURATION_NAME,
    labels: Mapping[str, str] | None = None,
    namespace_selector: Mapping[str, Any] | None = None,
    extra_object_labels: Mapping[str, str] | None = None,
    timeout_seconds: int = TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration, as applied (server-side apply with the operator's field manager).

    `client` is a `ServiceRef` in a cluster or an `https://` URL (tests: `https://127.0.0.1:PORT/validate`).
    `namespace_selector` and `extra_object_labels` exist for tests that must not catch other tests' objects.
    """

    def common() -> dict[str, Any]:  # fresh per webhook: no shared (aliased) sub-dicts
        return {
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "matchPolicy": "Equivalent",
            "failurePolicy": "Fail",
            "timeoutSeconds": timeout_seconds,
            "clientConfig": _client_config(client, ca_bundle),
            "namespaceSelector": copy.deepcopy(dict(namespace_selector or DEFAULT_NAMESPACE_SELECTOR)),
        }

    main = {
        "name": WEBHOOK_NAME,
        **common(),
        "objectSelector": {"matchLabels": {PROTECTED_LABEL: "true", **(extra_object_labels or {})}},
        "rules": _rules(RULES, OPERATIONS),
        "matchConditions": [exemption_condition(operator_users)],
    }
    scale = {
        "name": SCALE_WEBHOOK_NAME,
        **common(),
        "rules": _rules([("apps", ("deployments/scale", "statefulsets/scale"))], ["UPDATE"]),
        "matchConditions": [exemption_condition(operator_users), scale_target_condition()],
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "webhooks": [main, scale],
    }


def _contains(desired: Any, live: Any) -> bool:
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(_contains(v, live.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(_contains, desired, live))
    return bool(desired == live)


def drifted(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """True when `live` is missing or lacks something `desired` sets (webhooks, their order and fields, labels)."""
    if live is None:
        return True
    meta = desired.get("metadata") or {}
    live_labels = (live.get("metadata") or {}).get("labels") or {}
    if any(live_labels.get(k) != v for k, v in (meta.get("labels") or {}).items()):
        return True
    return not _contains(desired.get("webhooks"), live.get("webhooks"))


def injected_bundle(live: Mapping[str, Any] | None) -> bytes | None:
    """The caBundle every webhook of `live` carries, or None when they differ or one is missing (re-inject)."""
    if live is None:
        return None
    bundles = {((w.get("clientConfig") or {}).get("caBundle") or "") for w in live.get("webhooks") or []}
    if len(bundles) != 1:
        return None
    (value,) = bundles
    try:
        return base64.b64decode(value, validate=True) or None
    except ValueError:
        return None
