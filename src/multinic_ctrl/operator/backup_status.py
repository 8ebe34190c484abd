"""What the backup CronJob's history says (pure): last scheduled, last successful and last failed run.

Invariants:

* **only a Complete Job is a success** - a Job that failed (`Failed`/`FailureTarget`), ran past its
  `activeDeadlineSeconds` (even before the Job controller marks it), is being deleted, or vanished while
  running counts as failed and never as success;
* **vanished runs are noticed** - a Job the CronJob still lists as active but that no longer exists, or one this
  status listed as running last time that is gone without the CronJob having recorded a success since it
  started, is a failure (`JobVanished`). With `concurrencyPolicy: Forbid` no other run can succeed while one is
  running, so a success recorded after its start belongs to that run;
* **history is not forgotten** - the last success/failure survive the Jobs being pruned by the history limit:
  the previous status is an input, and times only move forward;
* **stable** - recomputing from the same observations gives the same document (a vanished run keeps the time it
  was first noticed), so status is not rewritten in a loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multinic_ctrl.kube.conditions import Condition, rfc3339


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Outcome:
    """A finished or running Job: kind is `succeeded`, `failed` or `running`."""

    job: str
    kind: str
    time: dt.datetime | None
    reason: str = ""


def _true_conditions(job: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = (job.get("status") or {}).get("conditions") or []
    return {c.get("type", ""): c for c in conditions if c.get("status") == "True"}


def job_outcome(job: Mapping[str, Any], now: dt.datetime) -> Outcome:
    meta, spec, status = job.get("metadata") or {}, job.get("spec") or {}, job.get("status") or {}
    name = str(meta.get("name", ""))
    true = _true_conditions(job)
    for failed in ("Failed", "FailureTarget"):
        if failed in true:
            cond = true[failed]
            return Outcome(
                name, "failed", parse_time(cond.get("lastTransitionTime")) or now, cond.get("reason") or failed
            )
    if "Complete" in true:
        when = parse_time(status.get("completionTime")) or parse_time(true["Complete"].get("lastTransitionTime"))
        return Outcome(name, "succeeded", when or now)
    start = parse_time(status.get("startTime"))
    deadline = spec.get("activeDeadlineSeconds")
    if start and isinstance(deadline, int) and start + dt.timedelta(seconds=deadline) <= now:
        return Outcome(name, "failed", start + dt.timedelta(seconds=deadline), "DeadlineExceeded")
    if meta.get("deletionTimestamp"):
        return Outcome(name, "failed", parse_time(meta["deletionTimestamp"]) or now, "JobDeleted")
    return Outcome(name, "running", start)


@dataclass(frozen=True)
class BackupState:
    configured: bool
    cronjob_exists: bool = False
    schedule: str = ""
    last_schedule: dt.datetime | None = None
    last_success: dt.datetime | None = None
    last_failure: Outcome | None = None
    running: tuple[Outcome, ...] = ()

    def document(self) -> dict[str, Any]:
        """`status.backupStatus`."""
        if not self.configured:
            return {"enabled": False}
        doc: dict[str, Any] = {"enabled": True, "schedule": self.schedule}
        if self.last_schedule:
            doc["lastScheduleTime"] = rfc3339(self.last_schedule)
        if self.last_success:
            doc["lastSuccessfulTime"] = rfc3339(self.last_success)
        if self.last_failure and self.last_failure.time:
            doc["lastFailedTime"] = rfc3339(self.last_failure.time)
            doc["lastFailedJob"] = self.last_failure.job
            doc["lastFailureReason"] = self.last_failure.reason
        if self.running:
            doc["activeJobs"] = [
                {"name": r.job, **({"startTime": rfc3339(r.time)} if r.time else {})} for r in self.running
            ]
        return doc

    def condition(self) -> Condition:
        if not self.configured:
            return Condition("BackupSucceeded", None, "BackupDisabled", "No backups configured (spec.database.backup)")
        if not self.cronjob_exists:
            return Condition("BackupSucceeded", None, "CronJobMissing", "The backup CronJob does not exist yet")
        running = f"; {self.running[0].job} is running" if self.running else ""
        failure = self.last_failure
        if failure and failure.time and (self.last_success is None or failure.time >= self.last_success):
            when = rfc3339(failure.time)
            return Condition(
                "BackupSucceeded",
                False,
                failure.reason,
                f"Backup {failure.job} failed at {when} ({failure.reason}){running}",
            )
        if self.last_success:
            return Condition(
                "BackupSucceeded", True, "Succeeded", f"Last backup succeeded at {rfc3339(self.last_success)}{running}"
            )
        return Condition(
            "BackupSucceeded", None, "NoBackupYet", f"No backup has run yet (schedule {self.schedule}){running}"
        )


def _owned_by(job: Mapping[str, Any], uid: str | None) -> bool:
    if not uid:
        return True
    refs = (job.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)


def _latest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    return max((t for t in (a, b) if t), default=None)


def evaluate(
    configured: bool,
    cronjob: Mapping[str, Any] | None,
    jobs: Sequence[Mapping[str, Any]],
    previous: Mapping[str, Any] | None,
    now: dt.datetime,
) -> BackupState:
    """Backup state from the CronJob, its Jobs and the previous `status.backupStatus`."""
    if not configured:
        return BackupState(False)
    prev = previous or {}
    if cronjob is None:
        return BackupState(True, False)
    cj_status = cronjob.get("status") or {}
    uid = (cronjob.get("metadata") or {}).get("uid")
    outcomes = [job_outcome(j, now) for j in jobs if _owned_by(j, uid)]
    present = {o.job for o in outcomes}
    success = _latest(parse_time(cj_status.get("lastSuccessfulTime")), parse_time(prev.get("lastSuccessfulTime")))
    for o in outcomes:
        if o.kind == "succeeded":
            success = _latest(success, o.time)

    failures: list[Outcome] = [o for o in outcomes if o.kind == "failed"]
    if prev.get("lastFailedJob") and parse_time(prev.get("lastFailedTime")):
        failures.append(
            Outcome(
                prev["lastFailedJob"], "failed", parse_time(prev["lastFailedTime"]), prev.get("lastFailureReason", "")
            )
        )

    def vanished(name: str) -> Outcome:
        first_seen = parse_time(prev.get("lastFailedTime")) if prev.get("lastFailedJob") == name else None
        return Outcome(name, "failed", first_seen or now, "JobVanished")

    for ref in cj_status.get("active") or []:
        if ref.get("name") and ref["name"] not in present:
            failures.append(vanished(ref["name"]))
    for entry in prev.get("activeJobs") or []:
        name, started = entry.get("name"), parse_time(entry.get("startTime"))
        if name and name not in present and not (success and started and success >= started):
            failures.append(vanished(name))

    last_failure = max(failures, key=lambda f: f.time or now, default=None)
    return BackupState(
        configured=True,
        cronjob_exists=True,
        schedule=str((cronjob.get("spec") or {}).get("schedule", "")),
        last_schedule=parse_time(cj_status.get("lastScheduleTime")),
        last_success=success,
        last_failure=last_failure,
        running=tuple(sorted((o for o in outcomes if o.kind == "running"), key=lambda o: o.job)),
    )
