"""Desired vs live: which operator-owned fields drifted, and which of those Kubernetes refuses to change (pure).

Invariants:

* **only what the operator sets is compared** - every field of the desired object is looked up in the live one;
  anything else in the live object (apiserver defaults such as `terminationMessagePath`, `status`,
  `managedFields`, fields other managers own) is ignored, as server-side apply with one field manager would
  leave it alone. `replicas` is compared only when the operator sets it (not under an autoscaler,
  `replicasManagedExternally`), and callers may ignore more paths;
* **lists merge the way the apiserver merges them** - containers, env, volumes, volumeMounts, ports and
  ownerReferences are keyed (an extra item another manager added is not drift, a missing or changed one of ours
  is); every other list is atomic and must match exactly (an extra RBAC subject, verb or capability *is* drift);
* **values compare by meaning** - quantities by value (`1000m` == `1`), so the apiserver's canonical form never
  looks like drift, which would otherwise be "repaired" forever;
* **paths, never values** - a `Drift` names field paths only (`spec.template.spec.containers[controller].image`),
  so reporting drift of a Secret cannot leak it;
* **immutability is known up front** - a StatefulSet only accepts changes to replicas, template,
  updateStrategy, ordinals, revisionHistoryLimit, persistentVolumeClaimRetentionPolicy and minReadySeconds
  (`volumeClaimTemplates`, `selector`, `serviceName`, ... need an orphaning delete and recreate); selectors,
  a Service's clusterIP, a binding's roleRef and a PVC's spec (beyond growing its storage request) are fixed too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import quantity
from .desired import object_key

# List fields merged by key (strategic-merge / SSA `listType=map`); everything else is atomic.
_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "ports": ("containerPort", "port"),
    "ownerReferences": ("uid",),
    "imagePullSecrets": ("name",),
}
_QUANTITY_KEYS = frozenset({"cpu", "memory", "storage", "ephemeral-storage", "sizeLimit"})
_STATEFULSET_MUTABLE = frozenset(
    {
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    }
)
_STORAGE_REQUEST = "spec.resources.requests.storage"


@dataclass(frozen=True)
class Drift:
    kind: str
    namespace: str
    name: str
    missing: bool = False
    changed: tuple[str, ...] = ()  # operator-owned field paths whose live value differs
    recreate: tuple[str, ...] = ()  # the subset Kubernetes will not change in place

    @property
    def drifted(self) -> bool:
        return self.missing or bool(self.changed)

    @property
    def patchable(self) -> tuple[str, ...]:
        return tuple(p for p in self.changed if p not in self.recreate)


def _item_key(items: Sequence[Any], field: str) -> str | None:
    """The merge key of a keyed list (None: compare atomically)."""
    if not items or not all(isinstance(i, Mapping) for i in items):
        return None
    for key in _LIST_KEYS.get(field, ()):
        if all(key in i for i in items):
            return key
    return None


def _equal_scalar(field: str, want: Any, have: Any) -> bool:
    if field in _QUANTITY_KEYS and isinstance(want, str | int) and not isinstance(want, bool):
        return quantity.equal(want, have)
    return bool(want == have) and type(want) is type(have)


def diff_fields(desired: Any, live: Any, path: str = "", field: str = "") -> list[str]:
    """Paths under `path` where `live` does not hold what `desired` says (desired ⊆ live semantics)."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return [path or "."]
        out: list[str] = []
        for key, want in desired.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in live:
                out.append(sub)
            else:
                out += diff_fields(want, live[key], sub, str(key))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list):
            return [path]
        key = _item_key(desired, field)
        if key is None:
            if len(desired) != len(live):
                return [path]
            if not all(isinstance(i, Mapping) for i in desired):  # a list of values is one value
                same = all(_equal_scalar(field, w, h) for w, h in zip(desired, live, strict=True))
                return [] if same else [path]
            out = []
            for i, (want, have) in enumerate(zip(desired, live, strict=True)):
                out += diff_fields(want, have, f"{path}[{i}]", field)
            return out
        by_key = {i.get(key): i for i in live if isinstance(i, Mapping)}
        out = []
        for want in desired:
            sub = f"{path}[{want[key]}]"
            out += [sub] if want[key] not in by_key else diff_fields(want, by_key[want[key]], sub, field)
        return out
    return [] if _equal_scalar(field, desired, live) else [path]


def _grows_storage(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    want = ((desired.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
    have = ((live.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
    try:
        return quantity.parse(str(want)) > quantity.parse(str(have))
    except ValueError:
        return False


def _immutable_rule(kind: str) -> Callable[[str, Mapping[str, Any], Mapping[str, Any]], bool]:
    def statefulset(path: str, _d: Mapping[str, Any], _l: Mapping[str, Any]) -> bool:
        parts = path.split(".")
        return parts[0] == "spec" and len(parts) > 1 and parts[1].split("[")[0] not in _STATEFULSET_MUTABLE

    def selector(path: str, _d: Mapping[str, Any], _l: Mapping[str, Any]) -> bool:
        return path.startswith("spec.selector")

    def service(path: str, _d: Mapping[str, Any], _l: Mapping[str, Any]) -> bool:
        return path.startswith(("spec.clusterIP", "spec.clusterIPs"))

    def binding(path: str, _d: Mapping[str, Any], _l: Mapping[str, Any]) -> bool:
        return path.startswith("roleRef")

    def claim(path: str, d: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
        return path.startswith("spec") and not (path == _STORAGE_REQUEST and _grows_storage(d, live))

    rules = {
        "StatefulSet": statefulset,
        "Deployment": selector,
        "Service": service,
        "RoleBinding": binding,
        "ClusterRoleBinding": binding,
        "PersistentVolumeClaim": claim,
    }
    return rules.get(kind, lambda _p, _d, _l: False)


def detect(desired: Mapping[str, Any], live: Mapping[str, Any] | None, *, ignore: Iterable[str] = ()) -> Drift:
    """Drift of one object; `ignore` drops paths (and everything below them) from the comparison."""
    meta = desired.get("metadata") or {}
    kind, namespace, name = str(desired.get("kind")), str(meta.get("namespace", "")), str(meta.get("name"))
    if live is None:
        return Drift(kind, namespace, name, missing=True)
    owned_meta = {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta}
    changed = diff_fields(owned_meta, live.get("metadata") or {}, "metadata")
    for key, want in desired.items():
        if key not in ("apiVersion", "kind", "metadata", "status"):
            changed += [key] if key not in live else diff_fields(want, live[key], key, key)
    skipped = tuple(ignore)
    changed = [p for p in changed if not any(p == s or p.startswith((f"{s}.", f"{s}[")) for s in skipped)]
    rule = _immutable_rule(kind)
    recreate = tuple(p for p in changed if rule(p, desired, live))
    return Drift(kind, namespace, name, changed=tuple(changed), recreate=recreate)


def detect_all(
    desired: Sequence[Mapping[str, Any]],
    live: Mapping[tuple[str, str, str, str], Mapping[str, Any]],
    *,
    ignore: Mapping[str, Iterable[str]] | None = None,
) -> list[Drift]:
    """Drift of every desired object that drifted; `live` is keyed by `desired.object_key`, `ignore` by kind."""
    found = []
    for obj in desired:
        drift = detect(obj, live.get(object_key(obj)), ignore=(ignore or {}).get(str(obj.get("kind")), ()))
        if drift.drifted:
            found.append(drift)
    return found
