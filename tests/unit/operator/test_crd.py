"""The MultiNicOperator CRD agrees with the parser: same patterns, same fields, the printer columns asked for,
a structural schema, and a status schema that holds what `status.compute_status` writes."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from multinic_ctrl.operator import cron, quantity, validation
from multinic_ctrl.operator.spec import parse_spec
from multinic_ctrl.operator.status import Observed, compute_status

from .support import spec_of

CRD_PATH = Path(__file__).resolve().parents[3] / "manifests" / "crds" / "multinic.example.com_multinicoperators.yaml"
CRD = yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]

# The parser's expression for each field name that has a pattern in the CRD.
PATTERNS = {
    "image": validation.IMAGE_REFERENCE,
    "name": None,  # env var names and Secret/ConfigMap names: decided by the parent below
    "key": validation.CONFIG_KEY,
    "path": validation.HTTP_PATH,
    "cpu": quantity.CPU_PATTERN,
    "memory": quantity.BYTES_PATTERN,
    "storageSize": quantity.BYTES_PATTERN,
    "storageClassName": validation.DNS1123_SUBDOMAIN,
    "claimName": validation.DNS1123_SUBDOMAIN,
    "database": validation.SQL_IDENTIFIER,
    "user": validation.SQL_USER,
    "schedule": cron.PATTERN,
    "timeZone": validation.TIMEZONE,
    "timezone": validation.TIMEZONE,
    "maxAge": validation.DURATION_DHM,
    "interval": validation.DURATION_HMS,
    "identityEndpoint": validation.HTTP_URL,
    "networkEndpoint": validation.HTTP_URL,
    "computeEndpoint": validation.HTTP_URL,
}


def walk(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def test_every_pattern_is_the_parsers() -> None:
    checked = 0
    for path, node in walk(SCHEMA):
        if "pattern" not in node:
            continue
        leaf = path.rsplit(".", 1)[-1].removesuffix("[]")
        expected = PATTERNS[leaf]
        if leaf == "name":
            expected = validation.ENV_NAME if path.endswith("env[].name") else validation.DNS1123_SUBDOMAIN
        assert node["pattern"] == f"^{expected}$", path
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    ("expression", "good", "bad"),
    [
        (validation.IMAGE_REFERENCE, ["mariadb:10.11", "r.io:5000/a/b@sha256:" + "f" * 64], ["A:1", "a:$(x)", "a b"]),
        (cron.PATTERN, ["0 2 * * *", "@daily"], ["0 2 * *", "TZ=UTC 0 2 * * *", "@every 1h"]),
        (quantity.CPU_PATTERN, ["200m", "1.5"], ["1Gi", "-1", "1e3"]),
        (quantity.BYTES_PATTERN, ["20Gi", "512M"], ["20 Gi", "1e9", "-1Gi"]),
        (validation.HTTP_URL, ["https://k:5000/v3"], ["http://u:p@h/", "ftp://h"]),
    ],
)
def test_crd_patterns_decide_like_the_parser(expression: str, good: list[str], bad: list[str]) -> None:
    """The CRD's `^...$` form (RE2 on the apiserver; `$` is end of text there) against the same samples."""
    anchored = re.compile(f"^{expression}$")
    assert all(anchored.match(v) for v in good)
    assert not any(anchored.match(v) for v in bad)


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in VERSION["additionalPrinterColumns"]}
    default = [c["name"] for c in VERSION["additionalPrinterColumns"] if not c.get("priority")]
    assert default == ["Phase", "Controller", "Database", "Age"]
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Controller"]["jsonPath"] == ".status.controllerStatus.ready"
    assert columns["Database"]["jsonPath"] == ".status.databaseStatus.phase"
    assert columns["Age"]["jsonPath"] == ".metadata.creationTimestamp"


def test_status_subresource() -> None:
    assert VERSION["subresources"] == {"status": {}}


def test_schema_is_structural() -> None:
    for path, node in walk(SCHEMA):
        if path in ("", "metadata"):
            continue
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        if "properties" in node:
            assert node["type"] == "object", path
        if node.get("type") == "array":
            assert "items" in node, path


MAXIMAL_SPEC: dict[str, Any] = {
    "controller": {
        "image": "multinic:v1",
        "imagePullPolicy": "IfNotPresent",
        "replicas": 2,
        "replicasManagedExternally": False,
        "resources": {"cpu": "200m", "memory": "256Mi"},
        "healthProbe": {"port": 8082, "path": "/healthz"},
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k", "optional": False}}},
            {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name", "apiVersion": "v1"}}},
        ],
    },
    "database": {
        "enabled": True,
        "image": "mariadb:10.11",
        "storageSize": "20Gi",
        "storageClassName": "standard",
        "resources": {"cpu": "500m", "memory": "512Mi"},
        "credentials": {
            "database": "multinic",
            "user": "multinic",
            "rootPassword": "x",
            "password": "y",
        },
        "backup": {
            "enabled": True,
            "schedule": "0 2 * * *",
            "timeZone": "UTC",
            "retention": {"keepLast": 7, "maxAge": "7d"},
            "target": {"storageSize": "20Gi", "storageClassName": "standard"},
            "image": "mariadb:10.11",
            "activeDeadlineSeconds": 3600,
            "backoffLimit": 1,
            "resources": {"cpu": "100m", "memory": "256Mi"},
        },
        "deleteDataOnUninstall": False,
    },
    "openstack": {"identityEndpoint": "http://k:5000/v3", "networkEndpoint": "http://n:9696", "computeEndpoint": "http://c:8774"},
    "protection": {"enableMutationPrevention": True, "enableAutoRecovery": True, "allowedOperations": ["get"]},
    "reconcileTrigger": {"mode": "scheduled", "interval": "15m", "schedule": "0 * * * *", "immediateOnCRChange": True,
                         "timezone": "UTC"},
}  # fmt: skip
ALTERNATIVES = {  # fields the maximal spec cannot hold at the same time as their alternative
    "database.credentials.rootPasswordSecretRef.name",
    "database.credentials.rootPasswordSecretRef.key",
    "database.credentials.passwordSecretRef.name",
    "database.credentials.passwordSecretRef.key",
    "database.backup.target.claimName",
}


def leaf_paths(value: Any, path: str = "") -> set[str]:
    if isinstance(value, Mapping):
        return {p for k, v in value.items() for p in leaf_paths(v, f"{path}.{k}" if path else k)}
    if isinstance(value, list):
        return {p for item in value for p in leaf_paths(item, f"{path}[]")}
    return {path}


def test_crd_spec_fields_are_the_parsers_fields() -> None:
    schema_leaves = {
        path.removeprefix("spec.")
        for path, node in walk(SCHEMA)
        if path.startswith("spec.") and "properties" not in node and "items" not in node
    }
    assert schema_leaves == leaf_paths(MAXIMAL_SPEC) | ALTERNATIVES
    parse_spec(MAXIMAL_SPEC)  # every field the CRD accepts, the parser accepts


def test_status_fields_fit_the_schema() -> None:
    status_schema = SCHEMA["properties"]["status"]
    assert not status_schema.get("x-kubernetes-preserve-unknown-fields")
    spec = spec_of({"database": {"backup": {}}})
    cronjob = {"metadata": {"uid": "u"}, "spec": {"schedule": "0 2 * * *"}, "status": {"active": [{"name": "j"}]}}
    status = compute_status(
        spec, 1, Observed(None, None, cronjob, []), None, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    written = {p.replace("[]", "") for p in leaf_paths(status)}
    allowed = {path.replace("[]", "") for path, _ in walk(status_schema)}
    assert written <= allowed, written - allowed
