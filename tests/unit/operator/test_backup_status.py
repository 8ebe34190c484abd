"""Backup history from the CronJob and its Jobs: only Complete is success; failed, timed-out, deleted and vanished
runs are failures; history survives pruning; recomputation is stable."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from multinic_ctrl.kube.conditions import rfc3339
from multinic_ctrl.operator.backup_status import BackupState, Outcome, evaluate, job_outcome, parse_time

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
CJ_UID = "cj-uid-1"
BACKOFF, DEADLINE = "BackoffLimitExceeded", "DeadlineExceeded"


def at(minutes_ago: float) -> str:
    return rfc3339(NOW - dt.timedelta(minutes=minutes_ago))


def job(
    name: str,
    *,
    conditions: tuple[tuple[str, str, str], ...] | list[tuple[str, str, str]] = (),
    start: str | None = None,
    completion: str | None = None,
    deadline: int | None = 3600,
    owner: str = CJ_UID,
    deleting: str | None = None,
    succeeded: int = 0,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "ownerReferences": [{"kind": "CronJob", "uid": owner, "controller": True}]}
    if deleting:
        meta["deletionTimestamp"] = deleting
    status: dict[str, Any] = {
        "conditions": [{"type": t, "status": "True", "reason": r, "lastTransitionTime": w} for t, r, w in conditions]
    }
    if start:
        status["startTime"] = start
    if completion:
        status["completionTime"] = completion
    if succeeded:
        status["succeeded"] = succeeded
    spec = {"activeDeadlineSeconds": deadline} if deadline else {}
    return {"metadata": meta, "spec": spec, "status": status}


def cronjob(
    *, last_schedule: str | None = None, last_success: str | None = None, active: tuple[str, ...] = ()
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if last_schedule:
        status["lastScheduleTime"] = last_schedule
    if last_success:
        status["lastSuccessfulTime"] = last_success
    if active:
        status["active"] = [{"kind": "Job", "name": n} for n in active]
    return {
        "metadata": {"name": "multinic-mariadb-backup", "uid": CJ_UID},
        "spec": {"schedule": "0 2 * * *"},
        "status": status,
    }


# ---------------------------------------------------------------- one Job


@pytest.mark.parametrize(
    ("given", "kind", "reason", "when"),
    [
        (job("j", conditions=[("Complete", "", at(5))], start=at(10), completion=at(5)), "succeeded", "", at(5)),
        (job("j", conditions=[("Complete", "", at(5))], start=at(10)), "succeeded", "", at(5)),
        (job("j", conditions=[("Failed", BACKOFF, at(3))], start=at(10)), "failed", BACKOFF, at(3)),
        (job("j", conditions=[("Failed", DEADLINE, at(3))], start=at(70)), "failed", DEADLINE, at(3)),
        (job("j", conditions=[("FailureTarget", "PodFailurePolicy", at(2))], start=at(9)), "failed",
         "PodFailurePolicy", at(2)),
        (job("j", conditions=[("Failed", "DeadlineExceeded", at(1))], start=at(70), succeeded=1), "failed",
         "DeadlineExceeded", at(1)),
        (job("j", start=at(10)), "running", "", at(10)),
        (job("j", conditions=[("SuccessCriteriaMet", "", at(1))], start=at(10)), "running", "", at(10)),
        (job("j", start=at(120)), "failed", "DeadlineExceeded", at(60)),  # past its deadline, not yet marked
        (job("j", start=at(120), deadline=None), "running", "", at(120)),
        (job("j", start=at(10), deleting=at(1)), "failed", "JobDeleted", at(1)),
        (job("j"), "running", "", None),
    ],
)  # fmt: skip
def test_job_outcome(given: dict[str, Any], kind: str, reason: str, when: str | None) -> None:
    outcome = job_outcome(given, NOW)
    assert (outcome.kind, outcome.reason) == (kind, reason)
    assert outcome.time == parse_time(when)


@pytest.mark.parametrize("text", [None, "", "yesterday", 5])
def test_parse_time_tolerates_junk(text: Any) -> None:
    assert parse_time(text) is None


# ---------------------------------------------------------------- history


def test_not_configured() -> None:
    state = evaluate(False, None, [], None, NOW)
    assert state.document() == {"enabled": False}
    assert (state.condition().status, state.condition().reason) == (None, "BackupDisabled")


def test_cronjob_missing() -> None:
    cond = evaluate(True, None, [], None, NOW).condition()
    assert (cond.status, cond.reason) == (None, "CronJobMissing")


def test_no_backup_yet() -> None:
    state = evaluate(True, cronjob(), [], None, NOW)
    assert (state.condition().status, state.condition().reason) == (None, "NoBackupYet")
    assert state.document() == {"enabled": True, "schedule": "0 2 * * *"}


def test_a_successful_run() -> None:
    done = job("b-1", conditions=[("Complete", "", at(50))], start=at(59), completion=at(50))
    state = evaluate(True, cronjob(last_schedule=at(60), last_success=at(50)), [done], None, NOW)
    cond = state.condition()
    assert (cond.status, cond.reason) == (True, "Succeeded")
    assert state.document() == {
        "enabled": True,
        "schedule": "0 2 * * *",
        "lastScheduleTime": at(60),
        "lastSuccessfulTime": at(50),
    }


def test_a_later_failure_wins() -> None:
    jobs = [
        job("b-1", conditions=[("Complete", "", at(1440))], start=at(1445), completion=at(1440)),
        job("b-2", conditions=[("Failed", "BackoffLimitExceeded", at(20))], start=at(60)),
    ]
    state = evaluate(True, cronjob(last_success=at(1440)), jobs, None, NOW)
    cond = state.condition()
    assert (cond.status, cond.reason) == (False, "BackoffLimitExceeded")
    assert "b-2" in cond.message
    doc = state.document()
    assert (doc["lastFailedTime"], doc["lastFailedJob"], doc["lastFailureReason"]) == (
        at(20),
        "b-2",
        "BackoffLimitExceeded",
    )


def test_a_later_success_wins_and_the_failure_is_still_reported() -> None:
    jobs = [
        job("b-1", conditions=[("Failed", "DeadlineExceeded", at(1440))], start=at(1500)),
        job("b-2", conditions=[("Complete", "", at(10))], start=at(20), completion=at(10)),
    ]
    state = evaluate(True, cronjob(last_success=at(10)), jobs, None, NOW)
    assert state.condition().status is True
    assert state.document()["lastFailedTime"] == at(1440)


def test_a_timed_out_job_is_never_a_success() -> None:
    hung = job("b-1", start=at(61))  # activeDeadlineSeconds 3600 passed; the Job controller has not marked it yet
    state = evaluate(True, cronjob(active=("b-1",)), [hung], None, NOW)
    cond = state.condition()
    assert (cond.status, cond.reason) == (False, "DeadlineExceeded")
    assert state.last_success is None and not state.running


def test_a_job_the_cronjob_lists_as_active_but_is_gone_has_vanished() -> None:
    first = evaluate(True, cronjob(active=("b-7",)), [], None, NOW)
    cond = first.condition()
    assert (cond.status, cond.reason) == (False, "JobVanished")
    later = evaluate(True, cronjob(active=("b-7",)), [], first.document(), NOW + dt.timedelta(minutes=5))
    assert later.document() == first.document()  # the time it was first noticed is kept: no status churn


def test_a_running_job_that_disappears_has_vanished() -> None:
    running = evaluate(True, cronjob(active=("b-3",)), [job("b-3", start=at(5))], None, NOW)
    assert running.document()["activeJobs"] == [{"name": "b-3", "startTime": at(5)}]
    assert "b-3 is running" in running.condition().message
    # deleted before it finished; the CronJob controller already dropped it from .status.active
    gone = evaluate(True, cronjob(last_success=at(1440)), [], running.document(), NOW + dt.timedelta(minutes=1))
    cond = gone.condition()
    assert (cond.status, cond.reason) == (False, "JobVanished")
    assert gone.document()["lastFailedJob"] == "b-3"
    assert "activeJobs" not in gone.document()


def test_a_finished_job_pruned_by_history_is_not_a_failure() -> None:
    running = evaluate(True, cronjob(active=("b-3",)), [job("b-3", start=at(5))], None, NOW)
    # it completed and was pruned (history limit) before the next look; the CronJob recorded the success
    later = evaluate(True, cronjob(last_success=at(1)), [], running.document(), NOW)
    assert later.condition().status is True and later.last_failure is None


def test_history_survives_pruned_jobs() -> None:
    previous = {
        "enabled": True,
        "lastSuccessfulTime": at(3000),
        "lastFailedTime": at(100),
        "lastFailedJob": "b-9",
        "lastFailureReason": "BackoffLimitExceeded",
    }
    state = evaluate(True, cronjob(), [], previous, NOW)
    doc = state.document()
    assert (doc["lastSuccessfulTime"], doc["lastFailedTime"], doc["lastFailedJob"]) == (at(3000), at(100), "b-9")
    assert state.condition().status is False


def test_times_only_move_forward() -> None:
    previous = {"lastSuccessfulTime": at(10)}
    state = evaluate(True, cronjob(last_success=at(500)), [], previous, NOW)
    assert state.document()["lastSuccessfulTime"] == at(10)


def test_jobs_of_other_cronjobs_are_ignored() -> None:
    foreign = job("x-1", conditions=[("Failed", "BackoffLimitExceeded", at(1))], start=at(5), owner="other")
    assert evaluate(True, cronjob(), [foreign], None, NOW).last_failure is None


def test_state_defaults() -> None:
    assert BackupState(True, True, "@daily", running=(Outcome("j", "running", None),)).document() == {
        "enabled": True,
        "schedule": "@daily",
        "activeJobs": [{"name": "j"}],
    }
