"""MultiNicOperator spec parsing and validation (pure; no I/O).

Invariants:

* **every field is attacker-written** - whoever may create a MultiNicOperator decides images, names, env and
  schedules of objects the operator creates with its own (broader) rights, so each field is checked against a
  closed grammar (`validation`, `quantity`, `cron`) before anything is built, and unknown fields are refused
  (the CRD prunes them; an object written past the schema must not get further);
* **one error, naming the field** - `parse_spec` raises `SpecError("spec.x.y: what is wrong")`, never a
  `KeyError`/`TypeError`, whatever the input;
* **secrets stay wrapped** - inline passwords become `SecretValue`s and are listed (by field path only) in
  `OperatorSpec.inline_secret_fields` so status can warn; an env var whose name says it holds a secret must
  use `valueFrom.secretKeyRef`, because an inline value would be copied into the Deployment;
* **the operator's own settings win** - env names the operator sets (`TRIGGER_FROM`, `LEADER_ELECT`, the
  `DB_*` settings of an operator-run database, ...) cannot be overridden through `spec.controller.env`.

Defaults follow MISSION.md's example (`multinic:v1alpha1`, 2 replicas, `mariadb:10.11`, 20Gi, ...).
"""

from __future__ import annotations

from typing import Any

from . import cron
from .model import (
    BackupSpec,
    ControllerSpec,
    Credentials,
    DatabaseSpec,
    EnvVar,
    OpenStackSpec,
    OperatorSpec,
    PasswordSource,
    ProtectionSpec,
    Resources,
    SecretKeyRef,
    TriggerSpec,
)
from .parse_controller import DATABASE_ENV, OPERATOR_ENV, parse_controller
from .parse_database import parse_database
from .validation import (
    K8S_VERBS,
    SpecError,
    boolean,
    duration_hms,
    fail,
    http_url,
    mapping,
    optional_string,
    string,
    timezone,
)

__all__ = [
    "BackupSpec",
    "ControllerSpec",
    "Credentials",
    "DatabaseSpec",
    "EnvVar",
    "OpenStackSpec",
    "OperatorSpec",
    "PasswordSource",
    "ProtectionSpec",
    "Resources",
    "SecretKeyRef",
    "SpecError",
    "TriggerSpec",
    "parse_spec",
]

TRIGGER_MODES = ("immediate", "scheduled", "manual", "webhook")


def _openstack(value: Any) -> OpenStackSpec:
    path = "spec.openstack"
    raw = mapping(value, path, {"identityEndpoint", "networkEndpoint", "computeEndpoint"})
    return OpenStackSpec(
        http_url(raw.get("identityEndpoint"), f"{path}.identityEndpoint"),
        http_url(raw.get("networkEndpoint"), f"{path}.networkEndpoint"),
        http_url(raw.get("computeEndpoint"), f"{path}.computeEndpoint"),
    )


def _protection(value: Any) -> ProtectionSpec:
    path = "spec.protection"
    raw = mapping(value, path, {"enableMutationPrevention", "enableAutoRecovery", "allowedOperations"})
    verbs = raw.get("allowedOperations")
    if verbs is None:
        allowed = ProtectionSpec.allowed_operations
    else:
        if not isinstance(verbs, list):
            fail(f"{path}.allowedOperations", "must be a list")
        for i, verb in enumerate(verbs):
            if verb not in K8S_VERBS:
                fail(f"{path}.allowedOperations[{i}]", f"must be one of {', '.join(K8S_VERBS)}")
        allowed = tuple(sorted(set(verbs), key=K8S_VERBS.index))
    return ProtectionSpec(
        enable_mutation_prevention=boolean(
            raw.get("enableMutationPrevention"), f"{path}.enableMutationPrevention", default=True
        ),
        enable_auto_recovery=boolean(raw.get("enableAutoRecovery"), f"{path}.enableAutoRecovery", default=True),
        allowed_operations=allowed,
    )


def _trigger(value: Any) -> TriggerSpec:
    path = "spec.reconcileTrigger"
    raw = mapping(value, path, {"mode", "interval", "schedule", "immediateOnCRChange", "timezone"})
    mode = string(raw.get("mode"), f"{path}.mode", default="immediate")
    if mode not in TRIGGER_MODES:
        fail(f"{path}.mode", f"must be one of {', '.join(TRIGGER_MODES)}")
    schedule = optional_string(raw.get("schedule"), f"{path}.schedule", max_length=100)
    if schedule is not None:
        try:
            cron.check(schedule)
        except cron.CronError as exc:
            fail(f"{path}.schedule", str(exc))
        if schedule.startswith("@"):
            fail(f"{path}.schedule", "the controller's scheduler takes five fields, not @descriptors")
    return TriggerSpec(
        mode=mode,
        interval=duration_hms(raw.get("interval"), f"{path}.interval"),
        schedule=schedule,
        immediate_on_cr_change=boolean(raw.get("immediateOnCRChange"), f"{path}.immediateOnCRChange", default=False),
        timezone=timezone(raw.get("timezone"), f"{path}.timezone"),
    )


def parse_spec(spec: Any) -> OperatorSpec:
    """Validate a MultiNicOperator `.spec` and fill in defaults; SpecError names the first bad field."""
    raw = mapping(spec, "spec", {"controller", "database", "openstack", "protection", "reconcileTrigger"})
    inline: list[str] = []
    database = parse_database(raw.get("database"), inline)
    reserved = OPERATOR_ENV | (DATABASE_ENV if database.enabled else frozenset())
    return OperatorSpec(
        controller=parse_controller(raw.get("controller"), reserved),
        database=database,
        openstack=_openstack(raw.get("openstack")),
        protection=_protection(raw.get("protection")),
        reconcile_trigger=_trigger(raw.get("reconcileTrigger")),
        inline_secret_fields=tuple(inline),
    )
