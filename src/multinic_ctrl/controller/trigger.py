"""The reconcile trigger policy (MISSION.md "Reconcile trigger"), as a pure function.

Inputs: the policy (from a MultiNicOperator's `spec.reconcileTrigger`), whether the spec changed since the
last successful sync (hash comparison - covers create, spec edits and rotated Secrets), whether a webhook asked,
when the config last synced (or was created), and now. Output: call OpenStack or not, and when to look again.

Semantics per mode:
- immediate: CR changes at once; a periodic resync (default 30 s) re-reads OpenStack for changes made there.
  Given the identity's `phase`, resyncs fall on that identity's common slots (see `resync.py`), so all
  configs of a project come due together and share one observation.
- scheduled: every `interval` after the last sync (or at the next `schedule` cron time in `timezone`); CR
  changes at once only with `immediateOnCRChange`, else they wait for the next slot.
- manual: only CR create/spec change (deletion is handled before the policy); never periodic.
- webhook: only when a webhook call asks (and CR changes with `immediateOnCRChange`); never periodic.
Updates that leave the hash alone (status, labels, annotations) never call OpenStack in any mode.
A failed reconcile stores no hash, so its retry still counts as a change and is not skipped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from multinic_ctrl.controller.resync import MIN_GAP, TOLERANCE, next_slot
from multinic_ctrl.controller.schedule import CronSchedule, ScheduleError

DEFAULT_RESYNC = dt.timedelta(seconds=30)
DEFAULT_INTERVAL = dt.timedelta(minutes=15)
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class Mode(StrEnum):
    IMMEDIATE = "immediate"
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    WEBHOOK = "webhook"


class TriggerConfigError(ValueError):
    pass


def parse_duration(text: str) -> dt.timedelta:
    """Go-style durations as users write them in YAML: `15m`, `1h30m`, `90s`."""
    match = _DURATION.match(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise TriggerConfigError(f"{text!r} is not a duration like 15m, 1h or 90s")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    value = dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
    if value < dt.timedelta(seconds=10):
        raise TriggerConfigError(f"{text!r} is too short (minimum 10s)")
    return value


def format_duration(value: dt.timedelta | None) -> str:
    if value is None:
        return "none"
    seconds = max(0, round(value.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{seconds}s" if seconds else "")
    return text or "0s"


@dataclass(frozen=True)
class TriggerPolicy:
    mode: Mode = Mode.IMMEDIATE
    interval: dt.timedelta = DEFAULT_INTERVAL
    immediate_on_cr_change: bool = False
    timezone: str = "UTC"
    schedule: CronSchedule | None = None
    resync: dt.timedelta = DEFAULT_RESYNC

    def next_due(self, anchor: dt.datetime, phase: dt.timedelta | None = None) -> dt.datetime:
        """When a periodic reconcile is next due, counting from the last sync (or creation). `phase`: the
        identity's resync phase - immediate mode then uses the identity's next slot instead of anchor + resync."""
        if self.mode is Mode.SCHEDULED:
            return self.schedule.next_after(anchor) if self.schedule else anchor + self.interval
        if phase is not None:
            return next_slot(anchor, self.resync, phase)
        return anchor + self.resync


def parse_policy(trigger: Mapping[str, Any] | None, *, resync: dt.timedelta = DEFAULT_RESYNC) -> TriggerPolicy:
    """Parse `spec.reconcileTrigger`; no configuration means `immediate`."""
    if not trigger:
        return TriggerPolicy(resync=resync)
    raw_mode = str(trigger.get("mode") or "immediate").lower()
    try:
        mode = Mode(raw_mode)
    except ValueError:
        raise TriggerConfigError(
            f"reconcileTrigger.mode {raw_mode!r} is not one of {', '.join(m.value for m in Mode)}"
        ) from None
    interval = parse_duration(str(trigger["interval"])) if trigger.get("interval") else DEFAULT_INTERVAL
    timezone = str(trigger.get("timezone") or "UTC")
    schedule = None
    try:
        if trigger.get("schedule"):
            schedule = CronSchedule.parse(str(trigger["schedule"]), timezone)
            schedule.next_after(dt.datetime.now(dt.UTC))  # a schedule that never fires is a config error
        else:
            CronSchedule.parse("* * * * *", timezone)  # validates the zone name even without a schedule
    except ScheduleError as exc:
        raise TriggerConfigError(f"reconcileTrigger: {exc}") from None
    return TriggerPolicy(
        mode=mode,
        interval=interval,
        immediate_on_cr_change=bool(trigger.get("immediateOnCRChange", False)),
        timezone=timezone,
        schedule=schedule,
        resync=resync,
    )


@dataclass(frozen=True)
class Decision:
    call_openstack: bool
    is_cr_change_event: bool
    reason: str
    next_requeue: dt.timedelta | None  # None: no timed requeue (manual/webhook wait for an event)


def decide(
    policy: TriggerPolicy,
    *,
    spec_changed: bool,
    webhook_requested: bool,
    last_sync: dt.datetime | None,
    created: dt.datetime,
    now: dt.datetime,
    phase: dt.timedelta | None = None,
) -> Decision:
    """`phase`: the config's identity's resync phase (immediate mode's aligned slots); None: no alignment."""
    mode = policy.mode
    periodic = mode in (Mode.IMMEDIATE, Mode.SCHEDULED)
    anchor = last_sync or created
    due_at = policy.next_due(anchor, phase) if periodic else None
    if mode is Mode.IMMEDIATE and last_sync is None:
        due_at = now  # never synced: nothing to wait for
    # Requeued for its slot by the queue's clock, a config may arrive a hair early by the wall clock: on time.
    early = TOLERANCE if mode is Mode.IMMEDIATE and phase is not None else dt.timedelta(0)
    reached = due_at is not None and now >= due_at - early
    after_success = policy.next_due(now, phase) - now if periodic else None

    def wait() -> dt.timedelta | None:
        # A resync slot may be closer than a second (the requeue then arrives just after it, with its peers).
        floor = MIN_GAP if early else dt.timedelta(seconds=1)
        return max(due_at - now, floor) if due_at is not None else None

    if webhook_requested:
        return Decision(True, spec_changed, "webhook", after_success)
    if spec_changed:
        if mode in (Mode.IMMEDIATE, Mode.MANUAL) or policy.immediate_on_cr_change:
            return Decision(True, True, "cr-change", after_success)
        if mode is Mode.SCHEDULED and reached:
            return Decision(True, True, "schedule", after_success)
        reason = "waiting-for-webhook" if mode is Mode.WEBHOOK else "waiting-for-schedule"
        return Decision(False, True, reason, wait())
    if reached:
        return Decision(True, False, "resync" if mode is Mode.IMMEDIATE else "schedule", after_success)
    return Decision(False, False, "unchanged", wait())
