"""Shared fixtures of the operator unit tests: an owner, specs, the packaged RBAC template, lookups."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from multinic_ctrl.operator.desired import desired_objects
from multinic_ctrl.operator.names import Owner
from multinic_ctrl.operator.rbac import packaged_template
from multinic_ctrl.operator.spec import OperatorSpec, parse_spec

UID = "0b6e4a8c-2f1d-4c3b-9a7e-5d8f1e2c3b4a"
OWNER = Owner("production-system", "multinic-system", UID, 3)
ROOT_PW = "inline-root-Pw-7731"
USER_PW = "inline-user-Pw-4402"

FULL_SPEC: dict[str, Any] = {
    "controller": {
        "image": "registry.example.com/multinic:v1.2.3",
        "replicas": 3,
        "resources": {"cpu": "250m", "memory": "300Mi"},
        "env": [
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "TRIGGER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "trigger-token", "key": "token"}}},
        ],
    },
    "database": {
        "image": "mariadb:10.11.6",
        "storageSize": "30Gi",
        "storageClassName": "fast-ssd",
        "credentials": {"rootPassword": ROOT_PW, "password": USER_PW, "database": "nics", "user": "nicuser"},
        "backup": {
            "schedule": "15 3 * * *",
            "timeZone": "Europe/Berlin",
            "retention": {"keepLast": 5, "maxAge": "10d"},
        },
    },
}


def spec_of(raw: Mapping[str, Any] | None = None) -> OperatorSpec:
    return parse_spec(dict(raw or {}))


def build(raw: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    return desired_objects(spec_of(raw), OWNER, packaged_template())


def find(objects: Sequence[Mapping[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"{kind} {name}: {len(matches)} matches"
    return dict(matches[0])


def containers(workload: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"] if workload["kind"] == "CronJob" else spec["template"]["spec"]
    return list(pod["containers"])


def pod_spec(workload: Mapping[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    return dict(
        spec["jobTemplate"]["spec"]["template"]["spec"] if workload["kind"] == "CronJob" else spec["template"]["spec"]
    )


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from walk_strings(v)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from walk_strings(item)
