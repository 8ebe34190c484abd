"""Watching what a controller owns: map an event on an owned object back to the key of its owner.

Invariants (controller-runtime's `Owns()` / `EnqueueRequestsFromMapFunc`, for owners Kubernetes cannot link):

* **labels first** - an owner named by a pair of labels (name, namespace) is found for any object, cluster-scoped
  ones included (a ClusterRole cannot carry an ownerReference to a namespaced owner);
* **ownerReferences too** - for namespaced objects a controller reference of the owner's kind also maps back, so
  an object whose labels were stripped still wakes its owner (who then puts the labels back);
* **deduplicated, read-only** - each owner key once per event; the object is never modified (the runner hands
  cached objects over uncopied).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .client import JsonObj

KeyMapper = Callable[[JsonObj], Iterable[str]]


def label_owner_keys(
    name_label: str, namespace_label: str, *, owner_kind: str = "", owner_api_version: str = ""
) -> KeyMapper:
    """Mapper: `<namespace label>/<name label>`, plus `<object namespace>/<ref name>` for each ownerReference
    of `owner_kind` (and `owner_api_version`, when given)."""

    def mapper(obj: JsonObj) -> list[str]:
        meta: dict[str, Any] = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        keys: list[str] = []
        name, namespace = labels.get(name_label), labels.get(namespace_label)
        if name and namespace:
            keys.append(f"{namespace}/{name}")
        own_namespace = meta.get("namespace")
        if owner_kind and own_namespace:
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") != owner_kind or not ref.get("name"):
                    continue
                if owner_api_version and ref.get("apiVersion") != owner_api_version:
                    continue
                key = f"{own_namespace}/{ref['name']}"
                if key not in keys:
                    keys.append(key)
        return keys

    return mapper
