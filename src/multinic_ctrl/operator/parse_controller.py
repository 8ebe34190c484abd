"""Parsing `spec.controller` (pure): image, replicas, resources, probe and the env list.

Invariants: env names are C identifiers, unique, and never one the operator sets itself; a value is either literal
or one `valueFrom` source (a Secret/ConfigMap key or an allow-listed pod field); a variable whose name says it
holds a secret must come from a Secret (an inline value would be copied into the Deployment); values are never
echoed in errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .model import DEFAULT_CONTROLLER_IMAGE, ControllerSpec, EnvVar, Resources, SecretKeyRef
from .quantity import quantity
from .validation import (
    boolean,
    config_key,
    dns_subdomain,
    env_name,
    fail,
    full,
    http_path,
    image,
    integer,
    mapping,
    optional_string,
    show,
    string,
)

MAX_ENV = 100
MAX_ENV_VALUE = 4096
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
FIELD_PATHS = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    }
)
_FIELD_PATH_KEYED = r"metadata\.(labels|annotations)\['[A-Za-z0-9]([-A-Za-z0-9_./]{0,250}[A-Za-z0-9])?'\]"
# Names of variables that hold secrets: their value must come from a Secret, never inline.
_SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|TOKEN|SECRET|CREDENTIAL|PRIVATE_KEY|API_KEY)", re.IGNORECASE)
# Set by the operator on every controller Deployment.
OPERATOR_ENV = frozenset(
    {"TRIGGER_FROM", "LEADER_ELECT", "LEADER_ELECTION_NAMESPACE", "POD_NAMESPACE", "PROBE_PORT", "PROBE_ADDRESS"}
)
# Set by the operator when it runs the database.
DATABASE_ENV = frozenset({"DB_HOST", "DB_PORT", "DB_USER", "DB_NAME", "DB_PASSWORD", "DB_PASSWORD_FILE"})


def resources(value: Any, path: str, default: Resources) -> Resources:
    raw = mapping(value, path, {"cpu", "memory"})
    return Resources(
        quantity(raw.get("cpu"), f"{path}.cpu", "cpu", default=default.cpu),
        quantity(raw.get("memory"), f"{path}.memory", "memory", default=default.memory),
    )


def key_ref(value: Any, path: str, *, default_key: str | None = None) -> SecretKeyRef:
    raw = mapping(value, path, {"name", "key"}, required=True)
    return SecretKeyRef(
        dns_subdomain(raw.get("name"), f"{path}.name"), config_key(raw.get("key"), f"{path}.key", default=default_key)
    )


def _optional_flag(raw: Mapping[str, Any], path: str) -> dict[str, Any]:
    return {"optional": boolean(raw["optional"], f"{path}.optional", default=False)} if "optional" in raw else {}


def _value_from(value: Any, path: str) -> dict[str, Any]:
    raw = mapping(value, path, {"secretKeyRef", "configMapKeyRef", "fieldRef"}, required=True)
    if len(raw) != 1:
        fail(path, "must have exactly one of secretKeyRef, configMapKeyRef, fieldRef")
    kind = next(iter(raw))
    sub = f"{path}.{kind}"
    if kind in ("secretKeyRef", "configMapKeyRef"):
        ref = mapping(raw[kind], sub, {"name", "key", "optional"}, required=True)
        return {
            kind: {
                "name": dns_subdomain(ref.get("name"), f"{sub}.name"),
                "key": config_key(ref.get("key"), f"{sub}.key"),
                **_optional_flag(ref, sub),
            }
        }
    ref = mapping(raw[kind], sub, {"fieldPath", "apiVersion"}, required=True)
    field_path = string(ref.get("fieldPath"), f"{sub}.fieldPath", max_length=300)
    if field_path not in FIELD_PATHS and not full(_FIELD_PATH_KEYED, field_path):
        fail(f"{sub}.fieldPath", f"{show(field_path)} is not a supported pod field")
    if ref.get("apiVersion", "v1") != "v1":
        fail(f"{sub}.apiVersion", "must be v1")
    return {"fieldRef": {"fieldPath": field_path}}


def _env(value: Any, path: str, reserved: frozenset[str]) -> tuple[EnvVar, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        fail(path, "must be a list")
    if len(value) > MAX_ENV:
        fail(path, f"lists {len(value)} variables; at most {MAX_ENV} are supported")
    result: list[EnvVar] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        raw = mapping(item, item_path, {"name", "value", "valueFrom"}, required=True)
        name = env_name(raw.get("name"), f"{item_path}.name")
        if name in reserved:
            fail(f"{item_path}.name", f"{name} is set by the operator and cannot be overridden")
        if name in seen:
            fail(f"{item_path}.name", f"{name} is listed twice")
        seen.add(name)
        if ("value" in raw) == ("valueFrom" in raw):
            fail(item_path, "must have exactly one of value, valueFrom")
        if "valueFrom" in raw:
            result.append(EnvVar(name, value_from=_value_from(raw["valueFrom"], f"{item_path}.valueFrom")))
            continue
        text = raw["value"]
        if not isinstance(text, str):
            fail(f"{item_path}.value", "must be a string")  # never echo: it may be a secret
        if len(text) > MAX_ENV_VALUE:
            fail(f"{item_path}.value", f"is longer than {MAX_ENV_VALUE} characters")
        if _SECRET_NAME.search(name) and not name.endswith("_FILE") and text:
            fail(
                f"{item_path}.value",
                f"{name} looks like a secret; give it with valueFrom.secretKeyRef (an inline value would be "
                "readable in the Deployment)",
            )
        result.append(EnvVar(name, value=text))
    return tuple(result)


def parse_controller(value: Any, reserved: frozenset[str]) -> ControllerSpec:
    path = "spec.controller"
    keys = {"image", "imagePullPolicy", "replicas", "replicasManagedExternally", "resources", "healthProbe", "env"}
    raw = mapping(value, path, keys)
    probe = mapping(raw.get("healthProbe"), f"{path}.healthProbe", {"port", "path"})
    policy = optional_string(raw.get("imagePullPolicy"), f"{path}.imagePullPolicy")
    if policy is not None and policy not in PULL_POLICIES:
        fail(f"{path}.imagePullPolicy", f"must be one of {', '.join(PULL_POLICIES)}")
    return ControllerSpec(
        image=image(raw.get("image"), f"{path}.image", default=DEFAULT_CONTROLLER_IMAGE),
        image_pull_policy=policy,
        replicas=integer(raw.get("replicas"), f"{path}.replicas", default=2, minimum=0, maximum=10),
        replicas_managed_externally=boolean(
            raw.get("replicasManagedExternally"), f"{path}.replicasManagedExternally", default=False
        ),
        resources=resources(raw.get("resources"), f"{path}.resources", ControllerSpec.resources),
        probe_port=integer(probe.get("port"), f"{path}.healthProbe.port", default=8082, minimum=1024, maximum=65535),
        probe_path=http_path(probe.get("path"), f"{path}.healthProbe.path", default="/healthz"),
        env=_env(raw.get("env"), f"{path}.env", reserved),
    )
