"""Server-side apply: send the fields a controller owns, let the apiserver merge and track ownership.

Invariants (why controllers apply rather than PUT or merge-patch what they manage):

* **one field manager, forced** - every apply of a controller uses the same `fieldManager` and `force=true`, so
  the controller re-takes any field it sets that someone else changed (that is the repair) instead of failing
  with 409 Conflict, while fields it does not send - defaults, fields other managers own, `replicas` under an
  autoscaler when left out - are never touched or removed;
* **the body is the desired object, nothing observed** - `apiVersion`, `kind` and `metadata.name` must match
  the request; `status` and server-set metadata (`resourceVersion`, `uid`, `managedFields`, ...) are refused or
  dropped, because an apply that carried a stale `resourceVersion` would turn into a precondition, and one that
  carried `managedFields` would rewrite ownership;
* **dry-run on request** - `dry_run=True` validates (admission included, e.g. Pod Security) without writing.

Names become URL path segments only through `Resource.path`, which refuses anything that is not a plain name.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .client import JsonObj, KubeClient, Resource

APPLY_PATCH = "application/apply-patch+yaml"
_SERVER_SET = ("resourceVersion", "uid", "creationTimestamp", "generation", "selfLink", "deletionTimestamp")


class ApplyError(ValueError):
    """The object cannot be applied as given (a programming error, raised before any request)."""


def apply_query(field_manager: str, *, force: bool = True, dry_run: bool = False) -> list[tuple[str, str]]:
    if not field_manager or len(field_manager) > 128 or not field_manager.isprintable():
        raise ApplyError("fieldManager must be 1-128 printable characters")
    query = [("fieldManager", field_manager)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    return query


def apply_body(resource: Resource, obj: Mapping[str, Any]) -> JsonObj:
    """A copy of `obj` fit to apply: identity checked against the request, status and server-set metadata gone."""
    kind = resource.kind or obj.get("kind")
    if obj.get("apiVersion") != resource.api_version or obj.get("kind") != kind:
        raise ApplyError(f"object is {obj.get('apiVersion')}/{obj.get('kind')}, not {resource.api_version}/{kind}")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not meta.get("name"):
        raise ApplyError("metadata.name is required")
    if meta.get("managedFields"):
        raise ApplyError("managedFields must not be applied")
    if resource.namespaced and not meta.get("namespace"):
        raise ApplyError(f"{kind} is namespaced; metadata.namespace is required")
    if not resource.namespaced and meta.get("namespace"):
        raise ApplyError(f"{kind} is cluster-scoped; metadata.namespace must be empty")
    body: JsonObj = copy.deepcopy(dict(obj))
    body.pop("status", None)
    for key in _SERVER_SET:
        body["metadata"].pop(key, None)
    return body


async def server_side_apply(
    client: KubeClient,
    resource: Resource,
    obj: Mapping[str, Any],
    *,
    field_manager: str,
    force: bool = True,
    dry_run: bool = False,
) -> JsonObj:
    """Apply `obj` (create or update) and return the object as stored (or as it would be, with `dry_run`)."""
    body = apply_body(resource, obj)
    meta = body["metadata"]
    return await client.request(
        "PATCH",
        resource.path(meta.get("namespace"), meta["name"]),
        query=apply_query(field_manager, force=force, dry_run=dry_run),
        body=body,
        content_type=APPLY_PATCH,
    )
