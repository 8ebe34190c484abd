"""The protection decision of `vprotection.multinic.example.com`: AdmissionReview v1 request → allow or deny (pure).

Invariants (the reason the webhook can be `failurePolicy: Fail` without locking anyone out):

* **identity comes from `userInfo.username`, never from a label** - anyone can set a label; only the apiserver's
  authenticator sets the user. The operator's own ServiceAccount(s) (`Policy.operator_users`), the garbage
  collector and the namespace controller are always allowed, so the operator can repair what it manages and
  cascading and namespace deletion never hang (the ValidatingWebhookConfiguration also exempts them in
  `matchConditions`, so they pass even while this endpoint is down);
* **protected means labelled in the old or the new object** - `multinic.example.com/protected=true` on either
  side makes a request protected, so removing the label is itself a protected change, and so is adding it (a user
  cannot dress an object of their own up as a managed one); objects labelled on neither side always pass;
* **only mutations are judged** - CREATE, UPDATE and DELETE; anything else (CONNECT, and the read verbs, which never
  reach a validating webhook) passes; `protection.allowedOperations` verbs pass (UPDATE is `patch` when the
  request's options are PatchOptions, else `update` - but the apiserver admits a PATCH as an UPDATE with
  UpdateOptions, so `patch` and `update` each allow every UPDATE; DELETE is `delete`: admission cannot tell a
  `deletecollection` from a `delete`); `enableMutationPrevention: false` turns protection off for an installation;
* **Kubernetes' own bookkeeping passes** - status-only updates (the `status` subresource, or an UPDATE that
  changes nothing but `status`, annotations, finalizers, owner references and server-managed metadata) by
  Kubernetes controllers (`system:serviceaccount:kube-system:*`, `system:kube-controller-manager`,
  `system:kube-scheduler`, `system:node:*`); and the work those controllers do for the objects the operator
  manages, which would otherwise break the installation: the StatefulSet controller creating the volume claims
  of its templates, the volume binder binding a claim (`spec.volumeName`), the claim-protection controller
  removing its finalizer (PVC and namespace deletion must never hang), an autoscaler scaling through `/scale`
  (`replicasManagedExternally`). Users cannot act as these identities; the operator repairs drift anyway;
* **`deployments/scale` and `statefulsets/scale` are covered** - `kubectl scale` would otherwise bypass
  `spec.controller.replicas`. A Scale object carries no labels (the apiserver copies only name, namespace, uid and
  resourceVersion into it), so the label cannot decide: a scale request is protected when it targets the managed
  workload name (`SCALE_TARGETS`) in a namespace that has an installation (`Policy.installations`);
* **a denial says what to change instead** - the message names the MultiNicOperator and the spec field
  (`multinic-controller is managed by MultiNicOperator multinic-system/production-system; change
  spec.controller.replicas there`);
* **no object content ever leaves** - the response and `Decision` carry the uid, names, the user and a field
  path, never `object`/`oldObject` (Secrets!); `Decision.summary` is what may be logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import ProtectionSpec
from .names import (
    BACKUP,
    CONTROLLER,
    CREDENTIALS_SECRET,
    DATABASE,
    DATABASE_HEADLESS,
    MANAGED_BY_LABEL,
    MANAGED_BY_NAMESPACE_LABEL,
    PROTECTED_LABEL,
)

GARBAGE_COLLECTOR = "system:serviceaccount:kube-system:generic-garbage-collector"
NAMESPACE_CONTROLLER = "system:serviceaccount:kube-system:namespace-controller"
ALWAYS_ALLOWED_USERS = frozenset({GARBAGE_COLLECTOR, NAMESPACE_CONTROLLER})

MUTATIONS = ("CREATE", "UPDATE", "DELETE")
SCALE_TARGETS: frozenset[tuple[str, str]] = frozenset({("deployments", CONTROLLER), ("statefulsets", DATABASE)})

_KUBE_CONTROLLER_PREFIXES = ("system:serviceaccount:kube-system:", "system:node:")
_KUBE_CONTROLLER_USERS = frozenset({"system:kube-controller-manager", "system:kube-scheduler"})
# metadata the apiserver or controllers maintain; a change to nothing else is bookkeeping
_BOOKKEEPING_METADATA = frozenset(
    {
        "annotations",
        "managedFields",
        "resourceVersion",
        "generation",
        "uid",
        "creationTimestamp",
        "selfLink",
        "finalizers",
        "ownerReferences",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)
_UPDATE_VERBS = frozenset({"update", "patch"})


def service_account_user(namespace: str, name: str) -> str:
    """The username a ServiceAccount authenticates as (what `Policy.operator_users` holds)."""
    return f"system:serviceaccount:{namespace}:{name}"


@dataclass(frozen=True)
class Installation:
    """One MultiNicOperator the operator serves: its name (namespace is the key) and protection settings."""

    name: str
    protection: ProtectionSpec = field(default_factory=ProtectionSpec)


@dataclass(frozen=True)
class Policy:
    """What the decision needs besides the request.

    `installations` maps a namespace to its MultiNicOperator. A protected object in a namespace the operator does not
    (yet) know is judged with `default_protection` (enabled): an operator that has just started fails closed.
    """

    operator_users: frozenset[str]
    installations: Mapping[str, Installation] = field(default_factory=dict)
    default_protection: ProtectionSpec = field(default_factory=ProtectionSpec)


@dataclass(frozen=True)
class Request:
    """The parts of an AdmissionReview request the decision reads (no object content)."""

    uid: str
    operation: str
    username: str
    groups: tuple[str, ...]
    resource: str
    sub_resource: str
    kind: str
    namespace: str
    name: str
    dry_run: bool
    options_kind: str

    @property
    def verb(self) -> str:
        """The RBAC verb of the operation, as `protection.allowedOperations` spells it."""
        if self.operation == "UPDATE":
            return "patch" if self.options_kind == "PatchOptions" else "update"
        return self.operation.lower()

    @property
    def target(self) -> str:
        resource = f"{self.resource}/{self.sub_resource}" if self.sub_resource else self.resource
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{resource} {where}{self.name}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # one word for logs and metrics: operator, system, read, allowed-operation, unprotected, ...
    request: Request
    message: str = ""
    installation: tuple[str, str] | None = None  # (namespace, name) of the MultiNicOperator, when known
    field_path: str | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """Loggable fields: who did what to which object, and the outcome. Never object content."""
        r = self.request
        return {
            "uid": r.uid,
            "operation": r.operation,
            "verb": r.verb,
            "target": r.target,
            "user": r.username,
            "dryRun": r.dry_run,
            "allowed": self.allowed,
            "reason": self.reason,
        }


class InvalidReview(ValueError):
    """The body is not an AdmissionReview v1 request."""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_review(review: Any) -> tuple[Request, Mapping[str, Any], Mapping[str, Any]]:
    """(request, object, oldObject) of an AdmissionReview v1; raises `InvalidReview`."""
    if not isinstance(review, Mapping):
        raise InvalidReview("body is not a JSON object")
    if review.get("apiVersion") != "admission.k8s.io/v1" or review.get("kind") != "AdmissionReview":
        raise InvalidReview("expected apiVersion admission.k8s.io/v1, kind AdmissionReview")
    raw = review.get("request")
    if not isinstance(raw, Mapping):
        raise InvalidReview("request is missing")
    uid = raw.get("uid")
    operation = raw.get("operation")
    if not isinstance(uid, str) or not uid:
        raise InvalidReview("request.uid is missing")
    if not isinstance(operation, str) or not operation:
        raise InvalidReview("request.operation is missing")
    user = _mapping(raw.get("userInfo"))
    groups = user.get("groups")
    obj, old = _mapping(raw.get("object")), _mapping(raw.get("oldObject"))
    name = _str(raw.get("name")) or _str(_mapping(obj.get("metadata")).get("name"))
    request = Request(
        uid=uid,
        operation=operation,
        username=_str(user.get("username")),
        groups=tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        resource=_str(_mapping(raw.get("resource")).get("resource")),
        sub_resource=_str(raw.get("subResource")),
        kind=_str(_mapping(raw.get("kind")).get("kind")),
        namespace=_str(raw.get("namespace")),
        name=name,
        dry_run=raw.get("dryRun") is True,
        options_kind=_str(_mapping(raw.get("options")).get("kind")),
    )
    return request, obj, old


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(obj.get("metadata")).get("labels"))


def _labelled(obj: Mapping[str, Any]) -> bool:
    return _labels(obj).get(PROTECTED_LABEL) == "true"


def _kube_controller(username: str) -> bool:
    return username in _KUBE_CONTROLLER_USERS or username.startswith(_KUBE_CONTROLLER_PREFIXES)


def _bookkeeping_only(old: Mapping[str, Any], new: Mapping[str, Any], resource: str = "") -> bool:
    """True when only `status`, annotations or server-managed metadata differ (and, for a volume claim, the
    binding the volume binder writes into `spec.volumeName`)."""
    if not old or not new:
        return False
    keys = (set(old) | set(new)) - {"status", "metadata"}
    if resource == "persistentvolumeclaims":
        keys -= {"spec"}
        old_spec, new_spec = _mapping(old.get("spec")), _mapping(new.get("spec"))
        spec_keys = (set(old_spec) | set(new_spec)) - {"volumeName"}
        if any(old_spec.get(k) != new_spec.get(k) for k in spec_keys):
            return False
    if any(old.get(k) != new.get(k) for k in keys):
        return False
    old_meta, new_meta = _mapping(old.get("metadata")), _mapping(new.get("metadata"))
    keys = (set(old_meta) | set(new_meta)) - _BOOKKEEPING_METADATA
    return all(old_meta.get(k) == new_meta.get(k) for k in keys)


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    value: Any = obj
    for key in path:
        value = _mapping(value).get(key)
    return value


def _containers(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = _get(obj, "spec", "template", "spec", "containers")
    return [c for c in found if isinstance(c, Mapping)] if isinstance(found, list) else []


def _workload_field(base: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The narrowest `spec.controller`/`spec.database` field an UPDATE of the workload corresponds to."""
    if not old or not new:
        return base
    changed: set[str] = set()
    if _get(old, "spec", "replicas") != _get(new, "spec", "replicas"):
        changed.add("replicas")
    old_c, new_c = _containers(old), _containers(new)
    if len(old_c) != len(new_c):
        changed.add("")
    for a, b in zip(old_c, new_c, strict=False):
        for key, name in (("image", "image"), ("resources", "resources"), ("env", "env")):
            if a.get(key) != b.get(key):
                changed.add(name)
        if {k: v for k, v in a.items() if k not in ("image", "resources", "env")} != {
            k: v for k, v in b.items() if k not in ("image", "resources", "env")
        }:
            changed.add("")
    rest = ("template", "replicas")
    if {k: v for k, v in _mapping(old.get("spec")).items() if k not in rest} != {
        k: v for k, v in _mapping(new.get("spec")).items() if k not in rest
    }:
        changed.add("")
    if len(changed) == 1 and "" not in changed:
        only = changed.pop()
        if base == "spec.database" and only == "replicas":
            return base  # the database runs one replica: there is no replicas field to point at
        return f"{base}.{only}"
    return base


def field_for(request: Request, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The MultiNicOperator field to change instead of the object (best effort: a hint, never a decision)."""
    resource, name = request.resource, request.name
    if resource == "deployments":
        if request.sub_resource == "scale":
            return "spec.controller.replicas"
        return _workload_field("spec.controller", old, new) if request.operation == "UPDATE" else "spec.controller"
    if resource == "statefulsets":
        if request.sub_resource == "scale" or request.operation != "UPDATE":
            return "spec.database"
        return _workload_field("spec.database", old, new)
    if resource == "services":
        return "spec.database" if name in (DATABASE, DATABASE_HEADLESS) else "spec.controller"
    if resource == "secrets":
        return "spec.database.credentials" if name == CREDENTIALS_SECRET else "spec"
    if resource == "cronjobs" or (resource == "persistentvolumeclaims" and name == BACKUP):
        return "spec.database.backup"
    if resource == "persistentvolumeclaims":
        return "spec.database.storageSize"
    if resource in ("serviceaccounts", "roles", "rolebindings", "clusterroles", "clusterrolebindings"):
        return "spec.controller"
    return "spec"


def _controller_work(request: Request, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """What a Kubernetes controller may do to a protected object (see the module docstring)."""
    if request.sub_resource in ("status", "scale"):
        return True
    if request.operation == "CREATE" and request.resource == "persistentvolumeclaims":
        return True  # the StatefulSet controller, from volumeClaimTemplates
    return request.operation == "UPDATE" and _bookkeeping_only(old, new, request.resource)


def _installation(
    request: Request, old: Mapping[str, Any], new: Mapping[str, Any], policy: Policy
) -> tuple[tuple[str, str] | None, ProtectionSpec]:
    labels = _labels(old) or _labels(new)
    namespace = request.namespace or _str(labels.get(MANAGED_BY_NAMESPACE_LABEL))
    found = policy.installations.get(namespace) if namespace else None
    if found is not None:
        return (namespace, found.name), found.protection
    owner = _str(labels.get(MANAGED_BY_LABEL))
    return ((namespace, owner) if namespace and owner else None), policy.default_protection


def denial_message(
    request: Request, installation: tuple[str, str] | None, field_path: str, *, label_removed: bool = False
) -> str:
    owner = f"MultiNicOperator {installation[0]}/{installation[1]}" if installation else "a MultiNicOperator"
    what = f"{request.name} is managed by {owner}"
    if label_removed:
        return f"{what}; the {PROTECTED_LABEL} label is part of the protection and cannot be removed directly"
    if request.operation == "DELETE":
        return f"{what}; change {field_path} there (deleting the MultiNicOperator uninstalls it)"
    return f"{what}; change {field_path} there"


def decide(request: Request, obj: Mapping[str, Any], old: Mapping[str, Any], policy: Policy) -> Decision:
    """Allow or deny one admission request (see the module docstring for the rules, in the order applied)."""
    user = request.username
    if user in policy.operator_users:
        return Decision(True, "operator", request)
    if user in ALWAYS_ALLOWED_USERS:
        return Decision(True, "system", request)
    if request.operation not in MUTATIONS:
        return Decision(True, "read", request)
    scale = request.sub_resource == "scale"
    if scale:
        protected = (request.resource, request.name) in SCALE_TARGETS and request.namespace in policy.installations
        protected = protected or _labelled(old) or _labelled(obj)
    else:
        protected = _labelled(old) or _labelled(obj)
    if not protected:
        return Decision(True, "unprotected", request)
    installation, protection = _installation(request, old, obj, policy)
    if not protection.enable_mutation_prevention:
        return Decision(True, "protection-disabled", request, installation=installation)
    allowed = set(protection.allowed_operations)
    if request.verb in allowed or (request.operation == "UPDATE" and allowed & _UPDATE_VERBS):
        return Decision(True, "allowed-operation", request, installation=installation)
    if _kube_controller(user) and _controller_work(request, old, obj):
        return Decision(True, "status", request, installation=installation)
    label_removed = request.operation == "UPDATE" and _labelled(old) and not _labelled(obj) and not scale
    path = field_for(request, old, obj)
    message = denial_message(request, installation, path, label_removed=label_removed)
    return Decision(False, "denied", request, message, installation, path)


def review_response(uid: str, decision: Decision | None = None, *, error: str | None = None) -> dict[str, Any]:
    """The AdmissionReview v1 answer: uid echoed, allowed, and on denial status {code 403, message}.

    `error` (no decision could be made) denies with code 500: the webhook fails closed like the apiserver would.
    """
    response: dict[str, Any] = {"uid": uid, "allowed": bool(decision and decision.allowed and error is None)}
    if error is not None:
        response["status"] = {"code": 500, "reason": "InternalError", "message": error}
    elif decision is not None and not decision.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": decision.message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def evaluate(review: Any, policy: Policy) -> tuple[Decision, dict[str, Any]]:
    """Parse, decide and answer in one step; raises `InvalidReview` for a body that is no AdmissionReview v1."""
    request, obj, old = parse_review(review)
    decision = decide(request, obj, old, policy)
    return decision, review_response(request.uid, decision)
