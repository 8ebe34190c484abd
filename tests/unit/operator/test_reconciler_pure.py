"""The pure helpers of the operator's I/O half: owner mapping of watched objects, the StatefulSet body that keeps
fields Kubernetes will not change, the status-update predicate and the backup gauges."""

from __future__ import annotations

from typing import Any

from multinic_ctrl.kube.owned import label_owner_keys
from multinic_ctrl.metrics import REGISTRY
from multinic_ctrl.operator.desired import MANAGED_KINDS
from multinic_ctrl.operator.names import MANAGED_BY_LABEL, MANAGED_BY_NAMESPACE_LABEL
from multinic_ctrl.operator.reconciler import (
    backup_gauges,
    keep_fixed_fields,
    owns_field,
    replacing_patch,
    replicas_handover,
)
from multinic_ctrl.operator.resources import MANAGED, secret_identity, watched
from multinic_ctrl.operator.service import owner_index, spec_or_lifecycle_changed
from tests.unit.operator.support import build, find

LABELS = {MANAGED_BY_LABEL: "prod", MANAGED_BY_NAMESPACE_LABEL: "multinic-system"}
REF = {"apiVersion": "multinic.example.com/v1alpha1", "kind": "MultiNicOperator", "name": "other", "uid": "u"}


def test_owner_keys_from_labels_and_owner_references() -> None:
    mapper = label_owner_keys(
        MANAGED_BY_LABEL, MANAGED_BY_NAMESPACE_LABEL, owner_kind="MultiNicOperator",
        owner_api_version="multinic.example.com/v1alpha1",
    )  # fmt: skip
    cluster_role = {"metadata": {"name": "multinic-controller-multinic-system", "labels": LABELS}}
    assert list(mapper(cluster_role)) == ["multinic-system/prod"]
    stripped = {"metadata": {"name": "d", "namespace": "multinic-system", "ownerReferences": [REF]}}
    assert list(mapper(stripped)) == ["multinic-system/other"]
    both = {"metadata": {"name": "d", "namespace": "multinic-system", "labels": LABELS, "ownerReferences": [
        dict(REF, name="prod"), dict(REF, kind="Deployment", name="x")]}}  # fmt: skip
    assert list(mapper(both)) == ["multinic-system/prod"]
    assert list(mapper({"metadata": {"name": "x", "labels": {MANAGED_BY_LABEL: "prod"}}})) == []
    assert owner_index(cluster_role) == ["multinic-system/prod"] and owner_index({"metadata": {}}) == []


def test_keep_fixed_fields_takes_immutable_statefulset_fields_from_live() -> None:
    desired = find(build({"database": {"storageSize": "50Gi", "image": "mariadb:11.4"}}), "StatefulSet")
    live: dict[str, Any] = {
        "spec": {
            "serviceName": "multinic-mariadb-headless",
            "selector": desired["spec"]["selector"],
            "volumeClaimTemplates": [
                {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "20Gi"}}},
                 "status": {"phase": "Pending"}}
            ],
        }
    }  # fmt: skip
    body = keep_fixed_fields(desired, live)
    assert body["spec"]["volumeClaimTemplates"] == [
        {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "20Gi"}}}}
    ]
    assert body["spec"]["template"]["spec"]["containers"][0]["image"] == "mariadb:11.4"  # mutable: still applied
    assert desired["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"


def test_status_updates_do_not_wake_the_operator() -> None:
    old = {"metadata": {"generation": 2, "finalizers": ["f"]}, "status": {"phase": "Progressing"}}
    assert not spec_or_lifecycle_changed(old, {**old, "status": {"phase": "Ready"}})
    assert spec_or_lifecycle_changed(old, {"metadata": {"generation": 3, "finalizers": ["f"]}})
    assert spec_or_lifecycle_changed(
        old, {"metadata": {"generation": 2, "finalizers": ["f"], "deletionTimestamp": "t"}}
    )
    assert spec_or_lifecycle_changed(None, old)


def test_every_managed_kind_has_a_resource_and_secrets_are_watched_as_metadata() -> None:
    for api_version, kind, namespaced in MANAGED_KINDS:
        assert MANAGED[kind].api_version == api_version and MANAGED[kind].namespaced == namespaced
    assert watched("Secret").metadata_only and not watched("Deployment").metadata_only
    slim = secret_identity({
        "kind": "PartialObjectMetadata",
        "metadata": {"name": "s", "namespace": "n", "labels": LABELS, "resourceVersion": "7",
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\": ...}"}},
        "data": {"password": "c2VjcmV0"},
    })  # fmt: skip
    assert slim == {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": "n", "labels": LABELS, "resourceVersion": "7"},
    }  # fmt: skip


def test_backup_gauges() -> None:
    def value(metric: str) -> float | None:
        return REGISTRY.get_sample_value(metric, {"namespace": "ns", "name": "b"})

    backup_gauges("ns", "b", {"enabled": False})
    assert value("multinic_operator_backup_last_status") == -1
    assert value("multinic_operator_backup_last_success_timestamp_seconds") == 0
    backup_gauges("ns", "b", {"enabled": True, "lastSuccessfulTime": "2026-01-01T00:00:00Z"})
    assert value("multinic_operator_backup_last_status") == 1
    assert value("multinic_operator_backup_last_success_timestamp_seconds") == 1767225600
    backup_gauges(
        "ns",
        "b",
        {"enabled": True, "lastSuccessfulTime": "2026-01-01T00:00:00Z", "lastFailedTime": "2026-01-02T00:00:00Z"},
    )
    assert value("multinic_operator_backup_last_status") == 0


def test_owns_field_reads_managed_fields_of_apply_operations_only() -> None:
    live = {
        "metadata": {
            "name": "multinic-controller",
            "namespace": "ns",
            "managedFields": [
                {"manager": "multinic-operator", "operation": "Apply",
                 "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}},
                {"manager": "kube-controller-manager", "operation": "Update",
                 "fieldsV1": {"f:status": {"f:replicas": {}}}},
            ],
        },
        "spec": {"replicas": 3},
    }  # fmt: skip
    assert owns_field(live, "multinic-operator", "spec", "replicas")
    assert not owns_field(live, "multinic-operator", "spec", "selector")
    assert not owns_field(live, "kube-controller-manager", "status", "replicas")  # an Update, not an Apply
    assert not owns_field({"metadata": {}}, "multinic-operator", "spec", "replicas")
    handover = replicas_handover(live)
    assert handover == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "multinic-controller", "namespace": "ns"}, "spec": {"replicas": 3},
    }  # fmt: skip


def test_replacing_patch_removes_nested_keys_a_merge_patch_would_keep() -> None:
    current = {
        "phase": "Degraded",
        "databaseStatus": {"phase": "Ready", "recreateRequired": ["StatefulSet x: spec.volumeClaimTemplates"]},
        "backupStatus": {"enabled": True, "activeJobs": [{"name": "j"}]},
        "gone": {"a": 1},
    }
    desired = {"phase": "Ready", "databaseStatus": {"phase": "Ready"}, "backupStatus": {"enabled": True}}
    patch = replacing_patch(current, desired)
    assert patch == {
        "phase": "Ready",
        "databaseStatus": {"phase": "Ready", "recreateRequired": None},
        "backupStatus": {"enabled": True, "activeJobs": None},
        "gone": None,
    }

    def merge(target: Any, change: Any) -> Any:  # RFC 7386
        if not isinstance(change, dict):
            return change
        out = dict(target) if isinstance(target, dict) else {}
        for key, value in change.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge(out.get(key), value)
        return out

    assert merge(current, patch) == desired
