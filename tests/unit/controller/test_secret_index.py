"""Configs are found by the Secrets they reference through an index, kept current as configs change."""

from __future__ import annotations

from typing import Any

from multinic_ctrl.controller.service import SECRET_INDEX, referenced_secrets
from multinic_ctrl.kube import Store


def config(name: str, namespace: str = "ns", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "vmNames": ["vm"],
        "subnetName": "s",
        "credentials": {"authURL": "https://ks", "username": "u", "password": "p"},
    }
    base.update(spec)
    return {"metadata": {"name": name, "namespace": namespace}, "spec": base}


def with_ref(name: str, secret: str, namespace: str = "ns") -> dict[str, Any]:
    creds = {"authURL": "https://ks", "username": "u", "passwordSecretRef": {"name": secret, "key": "password"}}
    return config(name, namespace, credentials=creds)


def test_both_kinds_of_reference_are_indexed_per_namespace() -> None:
    store = Store({SECRET_INDEX: referenced_secrets})
    store.upsert(with_ref("a", "creds"))
    store.upsert(config("b", credentialsSecretRef={"name": "whole"}, credentials={"password": "x"}))
    store.upsert(with_ref("c", "creds", namespace="other"))
    store.upsert(config("d"))  # inline password: no Secret
    assert store.index_keys(SECRET_INDEX, "ns/creds") == ["ns/a"]
    assert store.index_keys(SECRET_INDEX, "ns/whole") == ["ns/b"]
    assert store.index_keys(SECRET_INDEX, "other/creds") == ["other/c"]
    assert store.index_keys(SECRET_INDEX, "ns/nothing") == []


def test_the_index_follows_updates_and_deletes() -> None:
    store = Store({SECRET_INDEX: referenced_secrets})
    store.upsert(with_ref("a", "old"))
    store.upsert(with_ref("a", "new"))
    assert store.index_keys(SECRET_INDEX, "ns/old") == []
    assert store.index_keys(SECRET_INDEX, "ns/new") == ["ns/a"]
    store.remove("ns/a")
    assert store.index_keys(SECRET_INDEX, "ns/new") == []


def test_a_spec_that_does_not_parse_is_not_indexed_and_does_not_raise() -> None:
    store = Store({SECRET_INDEX: referenced_secrets})
    store.upsert({"metadata": {"name": "bad", "namespace": "ns"}, "spec": {"vmNames": "not-a-list"}})
    store.upsert(with_ref("escape", "../../kube-system/secrets/x"))
    assert len(store) == 2 and referenced_secrets(store.get("ns/bad") or {}) == []
    assert store.index_keys(SECRET_INDEX, "ns/../../kube-system/secrets/x") == []
