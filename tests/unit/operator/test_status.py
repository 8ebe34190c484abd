"""MultiNicOperator status from observed workloads: rollout truth, phases, conditions, stability, no secrets."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from multinic_ctrl.operator.credentials import credential_values
from multinic_ctrl.operator.status import (
    Observed,
    compute_status,
    controller_component,
    database_component,
    deleting_status,
    invalid_status,
    status_changed,
)

from .support import FULL_SPEC, ROOT_PW, USER_PW, spec_of, walk_strings

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=10)
SPEC = spec_of({})  # image multinic:v1alpha1, 2 replicas, mariadb:10.11


def deployment(
    *,
    image: str = "multinic:v1alpha1",
    replicas: int = 2,
    generation: int = 4,
    observed: int = 4,
    updated: int = 2,
    total: int = 2,
    available: int = 2,
    ready: int = 2,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": "multinic-controller", "generation": generation},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "controller", "image": image}]}}},
        "status": {
            "observedGeneration": observed,
            "replicas": total,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "readyReplicas": ready,
            "conditions": conditions or [],
        },
    }


def statefulset(
    *,
    image: str = "mariadb:10.11",
    generation: int = 2,
    observed: int = 2,
    ready: int = 1,
    updated: int = 1,
    current: str = "r1",
    update: str = "r1",
) -> dict[str, Any]:
    return {
        "metadata": {"name": "multinic-mariadb", "generation": generation},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "mariadb", "image": image}]}}},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": update,
        },
    }


DEADLINE = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]


@pytest.mark.parametrize(
    ("live", "phase", "ready", "reason", "message"),
    [
        (None, "Missing", False, "DeploymentMissing", "does not exist"),
        (deployment(observed=3), "Progressing", False, "RollingOut", "latest spec"),
        (deployment(conditions=DEADLINE), "Failed", False, "ProgressDeadlineExceeded", "progress deadline"),
        (deployment(image="multinic:v0"), "Progressing", False, "RollingOut", "Waiting for image multinic:v1alpha1"),
        (deployment(updated=1), "Progressing", False, "RollingOut", "1 of 2 replicas updated"),
        (deployment(total=3), "Progressing", False, "RollingOut", "1 old replicas terminating"),
        (deployment(available=1), "Progressing", False, "RollingOut", "1 of 2 replicas available"),
        (deployment(ready=1), "NotReady", False, "ReplicasNotReady", "1/2 controller replicas ready"),
        (deployment(), "Ready", True, "Ready", "2/2 controller replicas ready (multinic:v1alpha1)"),
        (deployment(replicas=0, updated=0, total=0, available=0, ready=0), "Ready", True, "Ready", "0/0"),
        (deployment(replicas=5, updated=5, total=5, available=5, ready=5), "Ready", True, "Ready", "5/5"),  # autoscaled
    ],
)
def test_controller_component(live: dict[str, Any] | None, phase: str, ready: bool, reason: str, message: str) -> None:
    component = controller_component(SPEC, live)
    assert (component.phase, component.ready, component.reason) == (phase, ready, reason)
    assert message in component.message


@pytest.mark.parametrize(
    ("raw", "live", "phase", "ready"),
    [
        ({"database": {"enabled": False}}, None, "External", True),
        ({}, None, "Missing", False),
        ({}, statefulset(observed=1), "Progressing", False),
        ({}, statefulset(image="mariadb:10.6"), "Progressing", False),
        ({}, statefulset(updated=0, update="r2", ready=1), "Progressing", False),
        ({}, statefulset(ready=0), "NotReady", False),
        ({}, statefulset(), "Ready", True),
    ],
)
def test_database_component(raw: dict[str, Any], live: dict[str, Any] | None, phase: str, ready: bool) -> None:
    component = database_component(spec_of(raw), live)
    assert (component.phase, component.ready) == (phase, ready)


def conditions_of(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_ready_installation() -> None:
    status = compute_status(SPEC, 7, Observed(deployment(), statefulset()), None, now=NOW)
    assert status["phase"] == "Ready" and status["observedGeneration"] == 7
    assert conditions_of(status) == {
        "Ready": ("True", "Ready"),
        "ControllerReady": ("True", "Ready"),
        "DatabaseReady": ("True", "Ready"),
        "BackupSucceeded": ("Unknown", "BackupDisabled"),
        "InlineCredentials": ("False", "SecretReferences"),
    }
    assert [c["type"] for c in status["conditions"]] == [
        "Ready",
        "ControllerReady",
        "DatabaseReady",
        "BackupSucceeded",
        "InlineCredentials",
    ]
    assert status["controllerStatus"] == {
        "phase": "Ready",
        "readyReplicas": 2,
        "desiredReplicas": 2,
        "ready": "2/2",
        "message": "2/2 controller replicas ready (multinic:v1alpha1)",
        "image": "multinic:v1alpha1",
    }
    assert status["databaseStatus"]["phase"] == "Ready" and status["databaseStatus"]["ready"] == "1/1"
    assert status["backupStatus"] == {"enabled": False}
    assert status["lastUpdated"] == "2026-03-01T12:00:00Z"
    assert all(c["observedGeneration"] == 7 for c in status["conditions"])


@pytest.mark.parametrize(
    ("observed", "recreate", "phase", "ready_reason"),
    [
        (Observed(None, None), (), "Progressing", "DeploymentMissing"),
        (Observed(deployment(image="multinic:v0"), statefulset()), (), "Progressing", "RollingOut"),
        (Observed(deployment(), statefulset(ready=0)), (), "Progressing", "ReplicasNotReady"),
        (Observed(deployment(conditions=DEADLINE), statefulset()), (), "Degraded", "ProgressDeadlineExceeded"),
        (Observed(deployment(), statefulset()), ("spec.volumeClaimTemplates",), "Degraded", "Ready"),
    ],
)
def test_phases(observed: Observed, recreate: tuple[str, ...], phase: str, ready_reason: str) -> None:
    status = compute_status(SPEC, 1, observed, None, now=NOW, recreate_required=recreate)
    assert status["phase"] == phase
    assert conditions_of(status)["Ready"][1] == ready_reason


def test_recreate_required_is_reported() -> None:
    recreate = ("spec.volumeClaimTemplates[0].spec.resources.requests.storage",)
    status = compute_status(SPEC, 1, Observed(deployment(), statefulset()), None, now=NOW, recreate_required=recreate)
    assert status["databaseStatus"]["recreateRequired"] == list(recreate)
    assert "Needs a recreate" in status["message"]


def test_upgrade_shows_until_done() -> None:
    spec = spec_of({"controller": {"image": "multinic:v2"}})
    rolling = deployment(image="multinic:v2", updated=1, total=3, available=1, ready=2)
    status = compute_status(spec, 2, Observed(rolling, statefulset()), None, now=NOW)
    assert status["phase"] == "Progressing"
    assert status["controllerStatus"]["message"] == "Rolling out multinic:v2: 1 of 2 replicas updated"
    done = deployment(image="multinic:v2")
    assert compute_status(spec, 2, Observed(done, statefulset()), status, now=LATER)["phase"] == "Ready"


def test_status_is_stable_and_rewritten_only_on_change() -> None:
    observed = Observed(deployment(), statefulset())
    first = compute_status(SPEC, 1, observed, None, now=NOW)
    again = compute_status(SPEC, 1, observed, first, now=LATER)
    assert again == first and not status_changed(first, again)
    degraded = compute_status(SPEC, 1, Observed(deployment(ready=1), statefulset()), first, now=LATER)
    assert status_changed(first, degraded)
    assert degraded["lastUpdated"] == "2026-03-01T12:10:00Z"
    by_type = {c["type"]: c for c in degraded["conditions"]}
    assert by_type["ControllerReady"]["lastTransitionTime"] == "2026-03-01T12:10:00Z"
    assert by_type["DatabaseReady"]["lastTransitionTime"] == "2026-03-01T12:00:00Z"  # did not flip


def test_status_changed_ignores_only_last_updated() -> None:
    assert not status_changed({"phase": "Ready", "lastUpdated": "a"}, {"phase": "Ready", "lastUpdated": "b"})
    assert status_changed({"phase": "Ready"}, {"phase": "Degraded"})
    assert status_changed(None, {"phase": "Ready"})


def test_inline_credentials_warn_by_field_and_never_show_values() -> None:
    spec = spec_of(FULL_SPEC)
    values = credential_values(spec, {"root-password": "stored-root", "password": USER_PW})
    status = compute_status(spec, 1, Observed(deployment(), statefulset()), None, now=NOW, credentials=values)
    inline = next(c for c in status["conditions"] if c["type"] == "InlineCredentials")
    assert (inline["status"], inline["reason"]) == ("True", "InlinePassword")
    assert "spec.database.credentials.rootPassword" in inline["message"]
    assert "stored root-password differs" in inline["message"]
    assert "Warning" in status["message"]
    for text in walk_strings(status):
        assert ROOT_PW not in text and USER_PW not in text and "stored-root" not in text


def test_backup_failure_is_in_the_message_but_not_in_ready() -> None:
    spec = spec_of({"database": {"backup": {}}})
    cronjob = {"metadata": {"uid": "u"}, "spec": {"schedule": "0 2 * * *"}, "status": {"active": [{"name": "gone-1"}]}}
    status = compute_status(spec, 1, Observed(deployment(), statefulset(), cronjob, []), None, now=NOW)
    assert status["phase"] == "Ready"
    assert conditions_of(status)["BackupSucceeded"] == ("False", "JobVanished")
    assert "gone-1" in status["message"]


def test_protection_status() -> None:
    previous = {"protectionStatus": {"preventedMutations": 4, "lastProtectionEvent": "denied edit of deployment"}}
    status = compute_status(SPEC, 1, Observed(), previous, now=NOW, protection_active=True)
    assert status["protectionStatus"] == {
        "active": True,
        "autoRecovery": True,
        "preventedMutations": 4,
        "lastProtectionEvent": "denied edit of deployment",
    }
    off = spec_of({"protection": {"enableMutationPrevention": False}})
    assert (
        compute_status(off, 1, Observed(), None, now=NOW, protection_active=True)["protectionStatus"]["active"] is False
    )


def test_invalid_spec_keeps_the_rest_of_the_status() -> None:
    ready = compute_status(SPEC, 1, Observed(deployment(), statefulset()), None, now=NOW)
    message = "spec.controller.image: 'x y' is not a valid image reference"
    invalid = invalid_status(message, 2, ready, now=LATER)
    assert (invalid["phase"], invalid["message"], invalid["observedGeneration"]) == ("Invalid", message, 2)
    assert conditions_of(invalid)["Ready"] == ("False", "InvalidSpec")
    assert invalid["controllerStatus"] == ready["controllerStatus"]
    assert invalid_status(message, 2, invalid, now=LATER + dt.timedelta(hours=1)) == invalid


def test_deleting_status() -> None:
    status = deleting_status("Removing managed objects", 3, None, now=NOW)
    assert status["phase"] == "Deleting" and conditions_of(status)["Ready"] == ("False", "Deleting")
