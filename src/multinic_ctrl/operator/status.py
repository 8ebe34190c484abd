"""MultiNicOperator status from what is observed (pure).

Phases: `Ready` (controller rolled out and ready, database ready), `Progressing` (installing, rolling out a new
image, waiting for pods), `Degraded` (a rollout exceeded its progress deadline, or a change needs a StatefulSet
recreate Kubernetes will not do in place), `Invalid` (the spec cannot be acted on; the message names the
field), `Deleting`.

Invariants:

* **rollout truth, not replica counts** - the controller is ready only when the Deployment controller has seen
  the latest generation, every replica runs the desired image and is available (`kubectl rollout status`'s
  rules), so an image upgrade shows as `Progressing` until it is done;
* **written only when it changed** - conditions keep `lastTransitionTime` unless they flip
  (`kube.conditions`), and `lastUpdated` moves only when something else in the document changed, so the
  reconciler can compare old and new status and skip the write;
* **nothing secret** - messages name fields and objects, never values (inline credentials are reported by
  field path).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multinic_ctrl.kube.conditions import Condition, merge_conditions, rfc3339

from . import backup_status
from .credentials import CredentialValues
from .names import CONTROLLER, DATABASE
from .spec import OperatorSpec

READY, PROGRESSING, DEGRADED, INVALID, DELETING = "Ready", "Progressing", "Degraded", "Invalid", "Deleting"
CONDITION_ORDER = ("Ready", "ControllerReady", "DatabaseReady", "BackupSucceeded", "InlineCredentials")


@dataclass(frozen=True)
class Observed:
    """Live objects of one installation (None: does not exist)."""

    deployment: Mapping[str, Any] | None = None
    statefulset: Mapping[str, Any] | None = None
    cronjob: Mapping[str, Any] | None = None
    jobs: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class Component:
    phase: str  # Ready, Progressing, NotReady, Failed, Missing, External
    ready: bool
    reason: str
    message: str
    ready_replicas: int = 0
    desired_replicas: int = 0
    image: str | None = None

    @property
    def failed(self) -> bool:
        return self.phase == "Failed"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _container_image(workload: Mapping[str, Any], name: str) -> str | None:
    containers = ((((workload.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or []
    return next((c.get("image") for c in containers if c.get("name") == name), None)


def _generation_seen(workload: Mapping[str, Any]) -> bool:
    generation = _int((workload.get("metadata") or {}).get("generation"))
    return _int((workload.get("status") or {}).get("observedGeneration")) >= generation


def controller_component(spec: OperatorSpec, deployment: Mapping[str, Any] | None) -> Component:
    want_image = spec.controller.image
    if deployment is None:
        return Component(
            "Missing",
            False,
            "DeploymentMissing",
            f"Deployment {CONTROLLER} does not exist",
            0,
            spec.controller.replicas,
        )
    live_spec, st = deployment.get("spec") or {}, deployment.get("status") or {}
    desired = _int(live_spec.get("replicas", spec.controller.replicas))
    ready, updated = _int(st.get("readyReplicas")), _int(st.get("updatedReplicas"))
    total, available = _int(st.get("replicas")), _int(st.get("availableReplicas"))
    image = _container_image(deployment, "controller")

    def state(phase: str, reason: str, message: str, ok: bool = False) -> Component:
        return Component(phase, ok, reason, message, ready, desired, image)

    for cond in st.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return state("Failed", "ProgressDeadlineExceeded", f"Rollout of {image} exceeded its progress deadline")
    if not _generation_seen(deployment):
        return state(PROGRESSING, "RollingOut", "Waiting for the Deployment controller to see the latest spec")
    if image != want_image:
        return state(PROGRESSING, "RollingOut", f"Waiting for image {want_image} to be applied")
    if updated < desired:
        return state(PROGRESSING, "RollingOut", f"Rolling out {image}: {updated} of {desired} replicas updated")
    if total > updated:
        return state(PROGRESSING, "RollingOut", f"Rolling out {image}: {total - updated} old replicas terminating")
    if available < updated:
        return state(PROGRESSING, "RollingOut", f"Rolling out {image}: {available} of {updated} replicas available")
    if ready < desired:
        return state("NotReady", "ReplicasNotReady", f"{ready}/{desired} controller replicas ready")
    return state(READY, "Ready", f"{ready}/{desired} controller replicas ready ({image})", ok=True)


def database_component(spec: OperatorSpec, statefulset: Mapping[str, Any] | None) -> Component:
    if not spec.database.enabled:
        return Component("External", True, "ExternalDatabase", "External database (spec.database.enabled: false)")
    if statefulset is None:
        return Component("Missing", False, "StatefulSetMissing", f"StatefulSet {DATABASE} does not exist", 0, 1)
    live_spec, st = statefulset.get("spec") or {}, statefulset.get("status") or {}
    desired = _int(live_spec.get("replicas", 1))
    ready, updated = _int(st.get("readyReplicas")), _int(st.get("updatedReplicas"))
    image = _container_image(statefulset, "mariadb")

    def state(phase: str, reason: str, message: str, ok: bool = False) -> Component:
        return Component(phase, ok, reason, message, ready, desired, image)

    if not _generation_seen(statefulset):
        return state(PROGRESSING, "RollingOut", "Waiting for the StatefulSet controller to see the latest spec")
    if image != spec.database.image:
        return state(PROGRESSING, "RollingOut", f"Waiting for image {spec.database.image} to be applied")
    if st.get("updateRevision") and st.get("currentRevision") != st.get("updateRevision") and updated < desired:
        return state(PROGRESSING, "RollingOut", f"Rolling out {image}: {updated} of {desired} replicas updated")
    if ready < desired:
        return state("NotReady", "ReplicasNotReady", f"{ready}/{desired} database replicas ready")
    return state(READY, "Ready", f"{ready}/{desired} database replicas ready ({image})", ok=True)


def _inline_condition(spec: OperatorSpec, credentials: CredentialValues | None) -> Condition:
    notes: list[str] = []
    if spec.inline_secret_fields:
        notes.append(
            f"{', '.join(spec.inline_secret_fields)} given inline: anyone who can read this MultiNicOperator can read "
            "it; use rootPasswordSecretRef/passwordSecretRef"
        )
    if credentials and credentials.differs_from_inline:
        notes.append(
            f"the stored {', '.join(credentials.differs_from_inline)} differs from the spec; MariaDB keeps the "
            "password it was initialised with, so the stored value is used"
        )
    if not notes:
        return Condition("InlineCredentials", False, "SecretReferences", "No credentials are given inline")
    return Condition("InlineCredentials", True, "InlinePassword", "; ".join(notes))


def _component_doc(component: Component, *, with_image: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "phase": component.phase,
        "readyReplicas": component.ready_replicas,
        "desiredReplicas": component.desired_replicas,
        "ready": f"{component.ready_replicas}/{component.desired_replicas}",
        "message": component.message,
    }
    if with_image and component.image:
        doc["image"] = component.image
    return doc


def _finish(document: dict[str, Any], previous: Mapping[str, Any] | None, now: dt.datetime) -> dict[str, Any]:
    """Set `lastUpdated`: kept from `previous` when nothing else changed."""
    prior = dict(previous or {})
    stamp = prior.pop("lastUpdated", None)
    document["lastUpdated"] = stamp if stamp and prior == document else rfc3339(now)
    return document


def compute_status(
    spec: OperatorSpec,
    generation: int,
    observed: Observed,
    previous: Mapping[str, Any] | None,
    *,
    now: dt.datetime,
    credentials: CredentialValues | None = None,
    recreate_required: Sequence[str] = (),
    protection_active: bool = False,
) -> dict[str, Any]:
    """The full `.status` document. `recreate_required` lists changes Kubernetes refuses in place (from drift)."""
    prev = previous or {}
    controller = controller_component(spec, observed.deployment)
    database = database_component(spec, observed.statefulset)
    backup = backup_status.evaluate(
        spec.database.backup is not None, observed.cronjob, observed.jobs, prev.get("backupStatus"), now
    )
    ready = controller.ready and database.ready
    degraded = controller.failed or database.failed or bool(recreate_required)
    phase = DEGRADED if degraded else (READY if ready else PROGRESSING)
    parts = [controller.message, database.message]
    if recreate_required:
        parts.append(f"Needs a recreate: {', '.join(recreate_required)}")
    backup_condition = backup.condition()
    if backup_condition.status is False:
        parts.append(backup_condition.message)
    inline = _inline_condition(spec, credentials)
    if inline.status:
        parts.append("Warning: " + inline.message)
    blocking = next((c for c in (controller, database) if not c.ready), None)
    conditions = [
        Condition("Ready", ready, "Ready" if ready else (blocking.reason if blocking else phase), "; ".join(parts[:2])),
        Condition("ControllerReady", controller.ready, controller.reason, controller.message),
        Condition("DatabaseReady", database.ready, database.reason, database.message),
        backup_condition,
        inline,
    ]
    database_doc = _component_doc(database, with_image=True)
    if recreate_required:
        database_doc["recreateRequired"] = list(recreate_required)
    previous_protection = prev.get("protectionStatus") or {}
    document: dict[str, Any] = {
        "phase": phase,
        "message": "; ".join(parts),
        "observedGeneration": generation,
        "conditions": merge_conditions(
            prev.get("conditions"), conditions, generation=generation, now=now, order=CONDITION_ORDER
        ),
        "controllerStatus": _component_doc(controller, with_image=True),
        "databaseStatus": database_doc,
        "backupStatus": backup.document(),
        "protectionStatus": {
            "active": protection_active and spec.protection.enable_mutation_prevention,
            "autoRecovery": spec.protection.enable_auto_recovery,
            "preventedMutations": _int(previous_protection.get("preventedMutations")),
            **(
                {"lastProtectionEvent": previous_protection["lastProtectionEvent"]}
                if previous_protection.get("lastProtectionEvent")
                else {}
            ),
        },
    }
    return _finish(document, previous, now)


def override_status(
    phase: str, reason: str, message: str, generation: int, previous: Mapping[str, Any] | None, *, now: dt.datetime
) -> dict[str, Any]:
    """Status when the installation is not evaluated (invalid spec, deletion): the rest of the previous status
    is kept as it was, `Ready` says why."""
    prev = dict(previous or {})
    prev.pop("lastUpdated", None)
    document = {
        **prev,
        "phase": phase,
        "message": message,
        "observedGeneration": generation,
        "conditions": merge_conditions(
            prev.get("conditions"),
            [Condition("Ready", False, reason, message)],
            generation=generation,
            now=now,
            order=CONDITION_ORDER,
        ),
    }
    return _finish(document, previous, now)


def invalid_status(
    message: str, generation: int, previous: Mapping[str, Any] | None, *, now: dt.datetime
) -> dict[str, Any]:
    """The spec cannot be acted on; `message` is the SpecError's (it names the field)."""
    return override_status(INVALID, "InvalidSpec", message, generation, previous, now=now)


def deleting_status(
    message: str, generation: int, previous: Mapping[str, Any] | None, *, now: dt.datetime
) -> dict[str, Any]:
    return override_status(DELETING, "Deleting", message, generation, previous, now=now)


def _without_stamp(document: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (document or {}).items() if k != "lastUpdated"}


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether `new` must be written (lastUpdated alone never counts)."""
    return _without_stamp(old) != _without_stamp(new)
