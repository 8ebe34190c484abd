"""Store: keys, copy-on-read isolation, label indexes kept in step with writes."""

from __future__ import annotations

from typing import Any

from multinic_ctrl.kube.client import object_key, split_key
from multinic_ctrl.kube.store import Store, label_index, namespace_index


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
    store.remove("ns/b")
    assert store.index_keys("app", "x") == []
    assert sorted(store) == ["ns/a", "ns/d", "other/c"]
