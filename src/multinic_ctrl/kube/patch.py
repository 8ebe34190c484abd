"""Write helpers: JSON merge-patch, status-subresource patch, finalizer add/remove.

Merge-patch (RFC 7386) is used rather than PUT because a reconcile should only send the fields it owns: a PUT
of a cached object would silently revert concurrent changes made by others. Where a whole list is rewritten
(finalizers) or a status is computed from a specific observed state, the patch carries
`metadata.resourceVersion`, which the API server treats as a precondition: a concurrent write makes it fail
with 409 Conflict instead of being overwritten.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import structlog

from .client import MERGE_PATCH, ApiError, JsonObj, KubeClient, Resource, is_conflict, is_not_found

log = structlog.get_logger(__name__)

_FINALIZER_RETRIES = 5


class ConflictError(ApiError):
    """409: the object changed since the resourceVersion the write was based on; re-read and retry."""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def merge_patch_body(patch: Mapping[str, Any], resource_version: str | None) -> JsonObj:
    """The patch document, with `metadata.resourceVersion` added as a precondition when given."""
    body: JsonObj = copy.deepcopy(dict(patch))
    if resource_version is not None:
        metadata = body.setdefault("metadata", {})
        metadata["resourceVersion"] = resource_version
    return body


async def merge_patch(
    client: KubeClient,
    resource: Resource,
    name: str,
    patch: Mapping[str, Any],
    *,
    namespace: str | None = None,
    subresource: str | None = None,
    resource_version: str | None = None,
) -> JsonObj:
    """JSON merge-patch an object (or subresource); with `resource_version`, 409 raises `ConflictError`.

    Remember merge-patch semantics: `None` deletes a key, lists are replaced whole.
    """
    body = merge_patch_body(patch, resource_version)
    try:
        return await client.patch(resource, name, body, namespace, subresource=subresource, content_type=MERGE_PATCH)
    except ApiError as exc:
        if exc.status == 409:
            raise ConflictError(exc.status, exc.reason, exc.body) from exc
        raise


async def patch_status(
    client: KubeClient,
    resource: Resource,
    name: str,
    status: Mapping[str, Any],
    *,
    namespace: str | None = None,
    resource_version: str | None = None,
) -> JsonObj:
    """Merge-patch `.status` through the status subresource (the only way when the CRD enables it).

    Pass `resource_version` when the status was derived from a specific observed object and must not be
    written on top of a newer one (e.g. `observedGeneration`); leave it None for monotonic facts like
    timestamps.
    """
    return await merge_patch(
        client,
        resource,
        name,
        {"status": dict(status)},
        namespace=namespace,
        subresource="status",
        resource_version=resource_version,
    )


async def _update_finalizers(
    client: KubeClient,
    resource: Resource,
    name: str,
    namespace: str | None,
    finalizer: str,
    add: bool,
    obj: Mapping[str, Any] | None,
) -> JsonObj | None:
    current: Mapping[str, Any] | None = obj
    for attempt in range(_FINALIZER_RETRIES):
        if current is None:
            try:
                current = await client.get(resource, name, namespace)
            except ApiError as exc:
                if is_not_found(exc):
                    return None
                raise
        finalizers = list(_meta(current).get("finalizers") or [])
        present = finalizer in finalizers
        if present == add:
            return dict(current)  # nothing to do
        if add:
            if _meta(current).get("deletionTimestamp"):
                # the apiserver forbids adding finalizers to an object being deleted
                return dict(current)
            finalizers.append(finalizer)
        else:
            finalizers = [f for f in finalizers if f != finalizer]
        try:
            return await client.patch(
                resource,
                name,
                merge_patch_body({"metadata": {"finalizers": finalizers}}, _meta(current).get("resourceVersion")),
                namespace,
                content_type=MERGE_PATCH,
            )
        except ApiError as exc:
            if is_not_found(exc):
                return None
            if not is_conflict(exc):
                raise
            log.debug("Finalizer update conflicted; re-reading.", name=name, namespace=namespace, attempt=attempt)
            current = None
    raise ConflictError(409, "Conflict", {"message": f"finalizer update on {name} kept conflicting"})


async def add_finalizer(
    client: KubeClient,
    resource: Resource,
    name: str,
    finalizer: str,
    *,
    namespace: str | None = None,
    obj: Mapping[str, Any] | None = None,
) -> JsonObj | None:
    """Ensure `finalizer` is present; returns the object (None if it no longer exists).

    The list is written whole with a resourceVersion precondition (retried on conflict) so a finalizer another
    controller added concurrently is never dropped. Pass a fresh `obj` to save a GET.
    """
    return await _update_finalizers(client, resource, name, namespace, finalizer, True, obj)


async def remove_finalizer(
    client: KubeClient,
    resource: Resource,
    name: str,
    finalizer: str,
    *,
    namespace: str | None = None,
    obj: Mapping[str, Any] | None = None,
) -> JsonObj | None:
    """Ensure `finalizer` is absent; returns the object (None if gone, e.g. deleted by this removal)."""
    return await _update_finalizers(client, resource, name, namespace, finalizer, False, obj)


def has_finalizer(obj: Mapping[str, Any], finalizer: str) -> bool:
    return finalizer in (_meta(obj).get("finalizers") or [])


def is_being_deleted(obj: Mapping[str, Any]) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))
