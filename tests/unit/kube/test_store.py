"""Store: keys, copy-on-read and copy-on-write isolation, label indexes kept in step with writes, memory."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

from multinic_ctrl.kube.client import object_key, split_key
from multinic_ctrl.kube.store import LAST_APPLIED, Store, label_index, namespace_index, without_bookkeeping


def cm(name: str, namespace: str | None = "ns", rv: str = "1", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv, "labels": dict(labels)}
    if namespace:
        meta["namespace"] = namespace
    return {"metadata": meta, "data": {"k": "v"}}


def test_keys_namespaced_and_cluster_scoped() -> None:
    assert object_key(cm("a")) == "ns/a"
    assert object_key(cm("node1", None)) == "node1"
    assert split_key("ns/a") == ("ns", "a")
    assert split_key("node1") == (None, "node1")


def test_upsert_get_remove() -> None:
    store = Store()
    key, old = store.upsert(cm("a"))
    assert (key, old) == ("ns/a", None)
    _, old = store.upsert(cm("a", rv="2"))
    assert old is not None and old["metadata"]["resourceVersion"] == "1"
    assert store.resource_version("ns/a") == "2"
    assert "ns/a" in store and len(store) == 1
    assert store.get_by_name("a", "ns") == store.get("ns/a")
    assert store.remove("ns/a") is not None
    assert store.remove("ns/a") is None
    assert store.get("ns/a") is None and store.resource_version("ns/a") is None


def test_reads_are_copies() -> None:
    store = Store({"app": label_index("app")})
    store.upsert(cm("a", app="x"))
    got = store.get("ns/a")
    assert got is not None
    got["data"]["k"] = "mutated"
    got["metadata"]["labels"]["app"] = "y"
    assert store.get("ns/a")["data"]["k"] == "v"  # type: ignore[index]
    store.objects()[0]["data"]["k"] = "mutated"
    store.by_index("app", "x")[0]["data"]["k"] = "mutated"
    assert store.get("ns/a")["data"]["k"] == "v"  # type: ignore[index]


def test_label_index_follows_updates_and_deletes() -> None:
    store = Store({"app": label_index("app"), "ns": namespace_index})
    store.upsert(cm("a", app="x"))
    store.upsert(cm("b", app="x"))
    store.upsert(cm("c", "other", app="y"))
    store.upsert(cm("d"))
    assert store.index_keys("app", "x") == ["ns/a", "ns/b"]
    assert [o["metadata"]["name"] for o in store.by_index("ns", "other")] == ["c"]
    store.upsert(cm("a", app="y", rv="2"))
    assert store.index_keys("app", "x") == ["ns/b"]
    assert store.index_keys("app", "y") == ["ns/a", "other/c"]
    assert (store.index_count("app", "x"), store.index_count("app", "y"), store.index_count("app", "z")) == (1, 2, 0)
    store.remove("ns/b")
    assert store.index_keys("app", "x") == []
    assert store.index_count("app", "x") == 0
    assert sorted(store) == ["ns/a", "ns/d", "other/c"]


def test_writes_are_copies_too() -> None:
    """The cache holds what was upserted, not the caller's object: editing it afterwards changes nothing."""
    store = Store()
    obj = cm("a")
    store.upsert(obj)
    obj["data"]["k"] = "edited after upsert"
    obj["metadata"]["resourceVersion"] = "99"
    assert store.get("ns/a") == cm("a") and store.resource_version("ns/a") == "1"


def test_without_bookkeeping_drops_managed_fields_and_last_applied_only() -> None:
    obj = cm("a", app="x")
    obj["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}]
    obj["metadata"]["annotations"] = {LAST_APPLIED: '{"data": {"password": "inline"}}', "keep": "me"}
    obj["status"] = {"phase": "Synced"}
    slim = without_bookkeeping(obj)
    assert slim == {
        "metadata": {
            "name": "a",
            "resourceVersion": "1",
            "labels": {"app": "x"},
            "namespace": "ns",
            "annotations": {"keep": "me"},
        },
        "data": {"k": "v"},
        "status": {"phase": "Synced"},
    }
    assert "managedFields" in obj["metadata"] and LAST_APPLIED in obj["metadata"]["annotations"], "input untouched"
    assert without_bookkeeping(cm("b")) == cm("b")


def _config(i: int) -> dict[str, Any]:
    """An OpenstackConfig as the controller caches it after a sync (no managedFields), names and times unique."""
    stamp = f"2026-12-02T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
    condition = {"lastTransitionTime": stamp, "message": "Rows match OpenStack", "observedGeneration": 1}
    return {
        "apiVersion": "multinic.example.com/v1alpha1",
        "kind": "OpenstackConfig",
        "metadata": {
            "name": f"cfg-{i:05d}",
            "namespace": "bench",
            "uid": f"{i:08x}-5d08-4843-bce4-5e02d3b8b4ff",
            "resourceVersion": str(1000 + i),
            "generation": 1,
            "creationTimestamp": stamp,
            "finalizers": ["multinic.example.com/interface-rows"],
        },
        "spec": {
            "vmNames": [f"bench-{i:05d}"],
            "subnetName": "bench-subnet",
            "credentials": {"authURL": "http://127.0.0.1:38853", "username": "admin", "projectID": "p"},
        },
        "status": {
            "phase": "Synced",
            "message": "1 interface(s) on 1/1 VM(s) synced",
            "lastSyncTime": stamp,
            "conditions": [
                {**condition, "reason": reason, "status": "True", "type": kind}
                for kind, reason in (
                    ("Ready", "Synced"),
                    ("CredentialsValid", "Authenticated"),
                    ("SubnetFound", "Found"),
                )
            ],
            "subnet": {"id": "6b512180-7ab8-47a1", "name": "bench-subnet", "cidr": "10.0.0.0/8", "mtu": 1450},
            "vms": [{"name": f"bench-{i:05d}", "status": "ACTIVE", "interfaces": [{"mac": "fa:16:3e:10:00:06"}]}],
        },
    }


def test_cached_objects_cost_a_fraction_of_their_json() -> None:
    """Memory: decoded, each object would cost two to five times its JSON; deflated against a similar object, a
    fraction of it (the objects of one store are much alike)."""
    objects = [_config(i) for i in range(2000)]
    text = sum(len(json.dumps(o, separators=(",", ":"))) for o in objects)
    tracemalloc.start()
    try:
        store = Store()
        for obj in objects:
            store.upsert(obj)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(store) == 2000
    assert held < 0.6 * text, f"{held / len(objects):.0f} bytes per object for {text / len(objects):.0f} of JSON"
    assert [store.get(f"bench/cfg-{i:05d}") for i in range(2000)] == objects
