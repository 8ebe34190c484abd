"""Patch, status-patch, finalizer and Event helpers against a real apiserver.

Status patches need a resource with a status subresource; a tiny throwaway CRD is created here so this test does
not depend on the product's CRDs.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from multinic_ctrl.kube.client import CONFIGMAPS, CORE_EVENTS, ApiError, KubeClient, Resource
from multinic_ctrl.kube.events import EventRecorder
from multinic_ctrl.kube.patch import (
    ConflictError,
    add_finalizer,
    has_finalizer,
    merge_patch,
    patch_status,
    remove_finalizer,
)

pytestmark = pytest.mark.integration

CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", False, "CustomResourceDefinition")
WIDGETS = Resource("kubetest.multinic.io", "v1", "widgets", True, "Widget")


async def _ensure_widget_crd(client: KubeClient) -> None:
    body = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.kubetest.multinic.io"},
        "spec": {
            "group": "kubetest.multinic.io",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    try:
        await client.create(CRDS, body)
    except ApiError as exc:
        if exc.status != 409:
            raise
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    while loop.time() < end:
        crd = await client.get(CRDS, "widgets.kubetest.multinic.io")
        conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        if conditions.get("Established") == "True":
            try:
                await client.list(WIDGETS, "default")
                return
            except ApiError:
                pass
        await asyncio.sleep(0.2)
    raise AssertionError("CRD not established")


async def test_merge_patch_with_and_without_precondition(kube_api: Any, namespace: str) -> None:
    client = KubeClient(kube_api)
    cm = await client.create(
        CONFIGMAPS, {"metadata": {"name": "p", "labels": {"a": "1"}}, "data": {"x": "1", "y": "2"}}, namespace
    )
    patched = await merge_patch(
        client,
        CONFIGMAPS,
        "p",
        {"data": {"x": "10", "y": None}, "metadata": {"labels": {"b": "2"}}},
        namespace=namespace,
    )
    assert patched["data"] == {"x": "10"}
    assert patched["metadata"]["labels"] == {"a": "1", "b": "2"}
    with pytest.raises(ConflictError):
        await merge_patch(
            client,
            CONFIGMAPS,
            "p",
            {"data": {"x": "stale"}},
            namespace=namespace,
            resource_version=cm["metadata"]["resourceVersion"],
        )
    ok = await merge_patch(
        client,
        CONFIGMAPS,
        "p",
        {"data": {"x": "fresh"}},
        namespace=namespace,
        resource_version=patched["metadata"]["resourceVersion"],
    )
    assert ok["data"]["x"] == "fresh"


async def test_status_patch_uses_the_subresource(kube_api: Any, namespace: str) -> None:
    client = KubeClient(kube_api)
    await _ensure_widget_crd(client)
    w = await client.create(
        WIDGETS,
        {"apiVersion": "kubetest.multinic.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}},
        namespace,
    )
    # status sent on the main resource is ignored when the status subresource is enabled
    main = await merge_patch(client, WIDGETS, "w", {"status": {"phase": "ignored"}}, namespace=namespace)
    assert "status" not in main
    updated = await patch_status(client, WIDGETS, "w", {"phase": "Ready", "observedGeneration": 1}, namespace=namespace)
    assert updated["status"] == {"phase": "Ready", "observedGeneration": 1}
    assert updated["spec"] == {"size": 1}
    with pytest.raises(ConflictError):
        await patch_status(
            client,
            WIDGETS,
            "w",
            {"phase": "Stale"},
            namespace=namespace,
            resource_version=w["metadata"]["resourceVersion"],
        )
    again = await patch_status(
        client,
        WIDGETS,
        "w",
        {"phase": "Done"},
        namespace=namespace,
        resource_version=updated["metadata"]["resourceVersion"],
    )
    assert again["status"]["phase"] == "Done"


async def test_finalizers_add_remove_keep_others(kube_api: Any, namespace: str) -> None:
    client = KubeClient(kube_api)
    await client.create(CONFIGMAPS, {"metadata": {"name": "f", "finalizers": ["other.io/keep"]}, "data": {}}, namespace)
    obj = await add_finalizer(client, CONFIGMAPS, "f", "multinic.io/cleanup", namespace=namespace)
    assert obj is not None and obj["metadata"]["finalizers"] == ["other.io/keep", "multinic.io/cleanup"]
    # idempotent; and a stale object passed in is handled through the conflict retry
    stale = await client.get(CONFIGMAPS, "f", namespace)
    await merge_patch(client, CONFIGMAPS, "f", {"data": {"touch": "1"}}, namespace=namespace)
    obj = await add_finalizer(client, CONFIGMAPS, "f", "multinic.io/cleanup", namespace=namespace)
    assert obj is not None and obj["metadata"]["finalizers"].count("multinic.io/cleanup") == 1
    obj = await remove_finalizer(client, CONFIGMAPS, "f", "multinic.io/cleanup", namespace=namespace, obj=stale)
    assert obj is not None and obj["metadata"]["finalizers"] == ["other.io/keep"]
    # deletion waits for finalizers; removing the last one lets the object go
    await client.delete(CONFIGMAPS, "f", namespace)
    terminating = await client.get(CONFIGMAPS, "f", namespace)
    assert terminating["metadata"].get("deletionTimestamp")
    assert await add_finalizer(client, CONFIGMAPS, "f", "late.io/x", namespace=namespace) is not None
    assert not has_finalizer(await client.get(CONFIGMAPS, "f", namespace), "late.io/x")
    await remove_finalizer(client, CONFIGMAPS, "f", "other.io/keep", namespace=namespace)
    with pytest.raises(ApiError) as gone:
        await client.get(CONFIGMAPS, "f", namespace)
    assert gone.value.status == 404
    assert await remove_finalizer(client, CONFIGMAPS, "f", "other.io/keep", namespace=namespace) is None


async def test_event_recorder_aggregates_a_hot_loop(kube_api: Any, namespace: str) -> None:
    client = KubeClient(kube_api)
    cm = await client.create(CONFIGMAPS, {"metadata": {"name": "ev"}, "data": {}}, namespace)
    cm.setdefault("apiVersion", "v1")
    cm.setdefault("kind", "ConfigMap")
    recorder = EventRecorder(client, "multinic-test", update_interval=0.2, burst=5)
    for _ in range(500):
        recorder.warning(cm, "SyncFailed", "OpenStack unreachable")
    recorder.normal(cm, "Synced", "all good")
    runner = asyncio.create_task(recorder.run())
    try:
        await asyncio.sleep(1.0)
        await recorder.drain()
    finally:
        runner.cancel()
    listed = await client.list(CORE_EVENTS, namespace, field_selector="involvedObject.name=ev")
    by_reason = {e["reason"]: e for e in listed["items"]}
    assert set(by_reason) == {"SyncFailed", "Synced"}, "one Event object per distinct event"
    assert by_reason["SyncFailed"]["count"] == 500
    assert by_reason["SyncFailed"]["type"] == "Warning"
    assert by_reason["SyncFailed"]["involvedObject"]["uid"] == cm["metadata"]["uid"]
    assert by_reason["Synced"]["count"] == 1
    assert recorder.writes <= 6, f"{recorder.writes} API writes for 501 records"
    # the spam filter caps distinct events per object (burst 5)
    for i in range(20):
        recorder.warning(cm, "Distinct", f"message {i}")
    await recorder.drain()
    listed = await client.list(CORE_EVENTS, namespace, field_selector="involvedObject.name=ev")
    assert sum(1 for e in listed["items"] if e["reason"] == "Distinct") == 3
    assert recorder.dropped == 17
