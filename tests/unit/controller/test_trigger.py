"""Table tests for the reconcile trigger policy (MISSION.md "Reconcile trigger", issue 6 item 5)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multinic_ctrl.controller.trigger import (
    DEFAULT_INTERVAL,
    DEFAULT_RESYNC,
    Decision,
    Mode,
    TriggerConfigError,
    TriggerPolicy,
    decide,
    format_duration,
    parse_duration,
    parse_policy,
)
from multinic_ctrl.controller.triggers import (
    HANDLED_FIELD,
    TRIGGER_ANNOTATION,
    pending_trigger,
    requested_trigger,
    trigger_patch,
)

M = dt.timedelta(minutes=1)
S = dt.timedelta(seconds=1)
CREATED = dt.datetime(2026, 1, 10, 8, 0, tzinfo=dt.UTC)
SYNCED = CREATED + dt.timedelta(hours=1)  # last successful sync, for the "synced before" rows


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", dt.timedelta(minutes=15)),
        ("30m", dt.timedelta(minutes=30)),
        ("1h", dt.timedelta(hours=1)),
        ("90s", dt.timedelta(seconds=90)),
        ("10s", dt.timedelta(seconds=10)),
        ("1h30m", dt.timedelta(hours=1, minutes=30)),
        ("2h0m5s", dt.timedelta(hours=2, seconds=5)),
        ("1m30s", dt.timedelta(seconds=90)),
        ("  15m  ", dt.timedelta(minutes=15)),
        ("120m", dt.timedelta(hours=2)),
    ],
)
def test_parse_duration_accepts_go_style(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is not a duration"),
        ("   ", "is not a duration"),
        ("15", "is not a duration"),
        ("m", "is not a duration"),
        ("1d", "is not a duration"),
        ("-5m", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("15M", "is not a duration"),
        ("5m1h", "is not a duration"),
        ("fast", "is not a duration"),
        ("9s", "too short"),
        ("0m", "too short"),
        ("0h0m0s", "too short"),
    ],
)
def test_parse_duration_rejects(text: str, fragment: str) -> None:
    with pytest.raises(TriggerConfigError, match=fragment) as info:
        parse_duration(text)
    assert repr(text) in str(info.value), "the message names the offending value"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "none"),
        (dt.timedelta(0), "0s"),
        (dt.timedelta(seconds=-30), "0s"),
        (dt.timedelta(seconds=1.4), "1s"),
        (dt.timedelta(seconds=59.6), "1m"),
        (dt.timedelta(minutes=15), "15m"),
        (dt.timedelta(minutes=5), "5m"),
        (dt.timedelta(seconds=90), "1m30s"),
        (dt.timedelta(hours=2), "2h"),
        (dt.timedelta(hours=1, minutes=30), "1h30m"),
        (dt.timedelta(hours=1, seconds=1), "1h1s"),
        (dt.timedelta(seconds=3661), "1h1m1s"),
        (dt.timedelta(days=1), "24h"),
    ],
)
def test_format_duration(value: dt.timedelta | None, expected: str) -> None:
    assert format_duration(value) == expected


@given(st.integers(min_value=10, max_value=10 * 24 * 3600))
def test_format_then_parse_round_trips(seconds: int) -> None:
    value = dt.timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


# ---------------------------------------------------------------- parse_policy


@pytest.mark.parametrize("trigger", [None, {}])
def test_no_configuration_means_immediate(trigger: dict[str, Any] | None) -> None:
    policy = parse_policy(trigger)
    assert policy == TriggerPolicy()
    assert policy.mode is Mode.IMMEDIATE
    assert policy.resync == DEFAULT_RESYNC == dt.timedelta(seconds=30)
    assert policy.interval == DEFAULT_INTERVAL == dt.timedelta(minutes=15)
    assert policy.immediate_on_cr_change is False
    assert policy.schedule is None


def test_resync_is_passed_through_even_without_configuration() -> None:
    assert parse_policy(None, resync=dt.timedelta(minutes=2)).resync == dt.timedelta(minutes=2)
    assert parse_policy({"mode": "immediate"}, resync=dt.timedelta(minutes=2)).resync == dt.timedelta(minutes=2)


@pytest.mark.parametrize(
    ("trigger", "mode", "interval", "ioc", "timezone"),
    [
        ({"mode": "immediate"}, Mode.IMMEDIATE, DEFAULT_INTERVAL, False, "UTC"),
        ({"mode": "Scheduled", "interval": "30m"}, Mode.SCHEDULED, dt.timedelta(minutes=30), False, "UTC"),
        ({"mode": "SCHEDULED", "interval": "1h30m"}, Mode.SCHEDULED, dt.timedelta(minutes=90), False, "UTC"),
        ({"mode": "scheduled"}, Mode.SCHEDULED, DEFAULT_INTERVAL, False, "UTC"),
        ({"mode": "scheduled", "timezone": "Europe/Berlin"}, Mode.SCHEDULED, DEFAULT_INTERVAL, False, "Europe/Berlin"),
        ({"mode": "manual", "immediateOnCRChange": True}, Mode.MANUAL, DEFAULT_INTERVAL, True, "UTC"),
        ({"mode": "webhook", "immediateOnCRChange": True}, Mode.WEBHOOK, DEFAULT_INTERVAL, True, "UTC"),
        ({"mode": "webhook", "immediateOnCRChange": False}, Mode.WEBHOOK, DEFAULT_INTERVAL, False, "UTC"),
        ({"mode": None, "interval": None, "timezone": None}, Mode.IMMEDIATE, DEFAULT_INTERVAL, False, "UTC"),
        ({"mode": "", "interval": ""}, Mode.IMMEDIATE, DEFAULT_INTERVAL, False, "UTC"),
        ({"immediateOnCRChange": True}, Mode.IMMEDIATE, DEFAULT_INTERVAL, True, "UTC"),
    ],
)
def test_parse_policy_fields(
    trigger: dict[str, Any], mode: Mode, interval: dt.timedelta, ioc: bool, timezone: str
) -> None:
    policy = parse_policy(trigger)
    assert (policy.mode, policy.interval, policy.immediate_on_cr_change, policy.timezone) == (
        mode,
        interval,
        ioc,
        timezone,
    )
    assert policy.schedule is None


def test_parse_policy_with_cron_schedule_in_zone() -> None:
    policy = parse_policy({"mode": "scheduled", "schedule": "0 9 * * 1-5", "timezone": "Europe/Berlin"})
    assert policy.schedule is not None
    assert policy.schedule.expression == "0 9 * * 1-5"
    assert str(policy.schedule.zone) == "Europe/Berlin"


@pytest.mark.parametrize(
    ("trigger", "fragments"),
    [
        (
            {"mode": "sometimes"},
            ["reconcileTrigger.mode", "'sometimes'", "immediate", "scheduled", "manual", "webhook"],
        ),
        ({"mode": "cron"}, ["reconcileTrigger.mode", "'cron'"]),
        ({"mode": "scheduled", "interval": "fast"}, ["'fast'", "is not a duration"]),
        ({"mode": "scheduled", "interval": "15"}, ["'15'", "is not a duration"]),
        ({"mode": "scheduled", "interval": "5s"}, ["'5s'", "too short"]),
        ({"mode": "scheduled", "interval": 15}, ["'15'", "is not a duration"]),
        (
            {"mode": "scheduled", "timezone": "Mars/Olympus_Mons"},
            ["reconcileTrigger", "time zone", "Mars/Olympus_Mons"],
        ),
        ({"timezone": "Not/AZone"}, ["time zone", "Not/AZone"]),
        ({"mode": "scheduled", "schedule": "61 * * * *"}, ["reconcileTrigger", "minute", "'61'"]),
        ({"mode": "scheduled", "schedule": "* * *"}, ["reconcileTrigger", "5 fields"]),
        ({"mode": "scheduled", "schedule": "0 25 * * *"}, ["reconcileTrigger", "hour"]),
        ({"mode": "scheduled", "schedule": "*/0 * * * *"}, ["reconcileTrigger", "bad step"]),
        (
            {"mode": "scheduled", "schedule": "0 9 * * *", "timezone": "Europe/Nowhere"},
            ["time zone", "Europe/Nowhere"],
        ),
    ],
)
def test_parse_policy_rejects_invalid_configuration(trigger: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(TriggerConfigError) as info:
        parse_policy(trigger)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_trigger_config_error_is_a_value_error() -> None:
    assert issubclass(TriggerConfigError, ValueError)


# ---------------------------------------------------------------- decide: the full table


def policy(mode: str, *, ioc: bool = False, **extra: Any) -> TriggerPolicy:
    """The tables below count in a 5-minute resync (written with it as the default; the arithmetic is the same
    for any interval). Without an identity phase, immediate mode counts from the last sync."""
    return parse_policy({"mode": mode, "immediateOnCRChange": ioc, **extra}, resync=5 * M)


@dataclass(frozen=True)
class Row:
    id: str
    policy: TriggerPolicy
    spec_changed: bool
    webhook: bool
    last_sync: dt.datetime | None
    now: dt.datetime
    call: bool
    cr_change: bool
    reason: str
    requeue: dt.timedelta | None


IMM, IMM_IOC = policy("immediate"), policy("immediate", ioc=True)
SCH, SCH_IOC = policy("scheduled", interval="15m"), policy("scheduled", ioc=True, interval="15m")
MAN, MAN_IOC = policy("manual"), policy("manual", ioc=True)
WEB, WEB_IOC = policy("webhook"), policy("webhook", ioc=True)
MONTH = dt.timedelta(days=30)

ROWS = [
    # immediate: CR changes at once, periodic resync every 5m
    Row("imm-changed", IMM, True, False, SYNCED, SYNCED + M, True, True, "cr-change", 5 * M),
    Row("imm-changed-ioc", IMM_IOC, True, False, SYNCED, SYNCED + M, True, True, "cr-change", 5 * M),
    Row("imm-changed-and-due", IMM, True, False, SYNCED, SYNCED + 6 * M, True, True, "cr-change", 5 * M),
    Row("imm-unchanged-not-due", IMM, False, False, SYNCED, SYNCED + M, False, False, "unchanged", 4 * M),
    Row("imm-unchanged-ioc-not-due", IMM_IOC, False, False, SYNCED, SYNCED + M, False, False, "unchanged", 4 * M),
    Row("imm-unchanged-exactly-due", IMM, False, False, SYNCED, SYNCED + 5 * M, True, False, "resync", 5 * M),
    Row("imm-unchanged-overdue", IMM, False, False, SYNCED, SYNCED + MONTH, True, False, "resync", 5 * M),
    Row("imm-webhook-unchanged", IMM, False, True, SYNCED, SYNCED + M, True, False, "webhook", 5 * M),
    Row("imm-webhook-changed", IMM, True, True, SYNCED, SYNCED + M, True, True, "webhook", 5 * M),
    Row("imm-never-synced-changed", IMM, True, False, None, CREATED + S, True, True, "cr-change", 5 * M),
    Row("imm-never-synced-unchanged", IMM, False, False, None, CREATED + S, True, False, "resync", 5 * M),
    # scheduled: every interval; CR changes at once only with immediateOnCRChange
    Row("sch-changed-not-due", SCH, True, False, SYNCED, SYNCED + M, False, True, "waiting-for-schedule", 14 * M),
    Row("sch-changed-ioc-not-due", SCH_IOC, True, False, SYNCED, SYNCED + M, True, True, "cr-change", 15 * M),
    Row("sch-changed-due", SCH, True, False, SYNCED, SYNCED + 15 * M, True, True, "schedule", 15 * M),
    Row("sch-changed-overdue", SCH, True, False, SYNCED, SYNCED + MONTH, True, True, "schedule", 15 * M),
    Row("sch-changed-ioc-due", SCH_IOC, True, False, SYNCED, SYNCED + 20 * M, True, True, "cr-change", 15 * M),
    Row("sch-unchanged-not-due", SCH, False, False, SYNCED, SYNCED + 10 * M, False, False, "unchanged", 5 * M),
    Row("sch-unchanged-ioc-not-due", SCH_IOC, False, False, SYNCED, SYNCED + 10 * M, False, False, "unchanged", 5 * M),
    Row("sch-unchanged-due", SCH, False, False, SYNCED, SYNCED + 15 * M, True, False, "schedule", 15 * M),
    Row("sch-unchanged-ioc-due", SCH_IOC, False, False, SYNCED, SYNCED + 15 * M, True, False, "schedule", 15 * M),
    Row("sch-unchanged-overdue", SCH, False, False, SYNCED, SYNCED + MONTH, True, False, "schedule", 15 * M),
    Row("sch-webhook-unchanged", SCH, False, True, SYNCED, SYNCED + M, True, False, "webhook", 15 * M),
    Row("sch-webhook-changed", SCH, True, True, SYNCED, SYNCED + M, True, True, "webhook", 15 * M),
    Row("sch-never-synced-not-due", SCH, True, False, None, CREATED + M, False, True, "waiting-for-schedule", 14 * M),
    Row("sch-never-synced-due", SCH, True, False, None, CREATED + 15 * M, True, True, "schedule", 15 * M),
    Row("sch-never-synced-ioc", SCH_IOC, True, False, None, CREATED + S, True, True, "cr-change", 15 * M),
    # the wait never drops below one second, even a moment before the slot
    Row(
        "sch-wait-floor",
        SCH,
        False,
        False,
        SYNCED,
        SYNCED + 15 * M - dt.timedelta(milliseconds=200),
        False,
        False,
        "unchanged",
        S,
    ),
    # manual: only CR create/spec change; never periodic, no timed requeue
    Row("man-changed", MAN, True, False, SYNCED, SYNCED + M, True, True, "cr-change", None),
    Row("man-changed-ioc", MAN_IOC, True, False, SYNCED, SYNCED + M, True, True, "cr-change", None),
    Row("man-unchanged", MAN, False, False, SYNCED, SYNCED + M, False, False, "unchanged", None),
    Row("man-unchanged-a-month-later", MAN, False, False, SYNCED, SYNCED + MONTH, False, False, "unchanged", None),
    Row("man-unchanged-ioc-later", MAN_IOC, False, False, SYNCED, SYNCED + MONTH, False, False, "unchanged", None),
    Row("man-webhook-unchanged", MAN, False, True, SYNCED, SYNCED + M, True, False, "webhook", None),
    Row("man-never-synced-changed", MAN, True, False, None, CREATED + S, True, True, "cr-change", None),
    Row("man-never-synced-unchanged", MAN, False, False, None, CREATED + MONTH, False, False, "unchanged", None),
    # webhook: only a webhook call (and CR changes with immediateOnCRChange); never periodic
    Row("web-changed", WEB, True, False, SYNCED, SYNCED + M, False, True, "waiting-for-webhook", None),
    Row("web-changed-later", WEB, True, False, SYNCED, SYNCED + MONTH, False, True, "waiting-for-webhook", None),
    Row("web-changed-ioc", WEB_IOC, True, False, SYNCED, SYNCED + M, True, True, "cr-change", None),
    Row("web-unchanged", WEB, False, False, SYNCED, SYNCED + MONTH, False, False, "unchanged", None),
    Row("web-unchanged-ioc", WEB_IOC, False, False, SYNCED, SYNCED + MONTH, False, False, "unchanged", None),
    Row("web-webhook-unchanged", WEB, False, True, SYNCED, SYNCED + M, True, False, "webhook", None),
    Row("web-webhook-changed", WEB, True, True, SYNCED, SYNCED + M, True, True, "webhook", None),
    Row("web-never-synced", WEB, True, False, None, CREATED + S, False, True, "waiting-for-webhook", None),
    Row("web-never-synced-webhook", WEB, True, True, None, CREATED + S, True, True, "webhook", None),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_decide_table(row: Row) -> None:
    decision = decide(
        row.policy,
        spec_changed=row.spec_changed,
        webhook_requested=row.webhook,
        last_sync=row.last_sync,
        created=CREATED,
        now=row.now,
    )
    assert decision == Decision(row.call, row.cr_change, row.reason, row.requeue)


def test_table_covers_every_mode_change_ioc_and_webhook_combination() -> None:
    seen = {(r.policy.mode, r.spec_changed, r.policy.immediate_on_cr_change, r.webhook) for r in ROWS}
    missing = {
        (mode, changed, ioc, False) for mode in Mode for changed in (True, False) for ioc in (True, False)
    } - seen
    assert not missing
    assert {r.policy.mode for r in ROWS if r.webhook} == set(Mode)


# ---------------------------------------------------------------- decide: properties and scenarios


ALL_POLICIES = [IMM, IMM_IOC, SCH, SCH_IOC, MAN, MAN_IOC, WEB, WEB_IOC]


@pytest.mark.parametrize("pol", ALL_POLICIES, ids=lambda p: f"{p.mode}-ioc={p.immediate_on_cr_change}")
@pytest.mark.parametrize("elapsed", [S, M, 4 * M, 5 * M - S])
def test_an_update_that_keeps_the_hash_never_calls_openstack_before_due(
    pol: TriggerPolicy, elapsed: dt.timedelta
) -> None:
    """Status/label/annotation updates: no OpenStack call, nextRequeue follows the mode."""
    decision = decide(
        pol, spec_changed=False, webhook_requested=False, last_sync=SYNCED, created=CREATED, now=SYNCED + elapsed
    )
    assert decision.call_openstack is False
    assert decision.is_cr_change_event is False
    expected = {
        Mode.IMMEDIATE: 5 * M - elapsed,
        Mode.SCHEDULED: 15 * M - elapsed,
        Mode.MANUAL: None,
        Mode.WEBHOOK: None,
    }[pol.mode]
    assert decision.next_requeue == expected


@pytest.mark.parametrize("pol", ALL_POLICIES, ids=lambda p: f"{p.mode}-ioc={p.immediate_on_cr_change}")
def test_a_webhook_request_always_calls_openstack(pol: TriggerPolicy) -> None:
    for changed in (True, False):
        decision = decide(
            pol, spec_changed=changed, webhook_requested=True, last_sync=SYNCED, created=CREATED, now=SYNCED + S
        )
        assert decision.call_openstack is True
        assert decision.reason == "webhook"
        assert decision.is_cr_change_event is changed


@pytest.mark.parametrize("pol", ALL_POLICIES, ids=lambda p: f"{p.mode}-ioc={p.immediate_on_cr_change}")
def test_manual_and_webhook_never_requeue_on_a_timer(pol: TriggerPolicy) -> None:
    for changed in (True, False):
        for webhook in (True, False):
            for last in (None, SYNCED):
                decision = decide(
                    pol,
                    spec_changed=changed,
                    webhook_requested=webhook,
                    last_sync=last,
                    created=CREATED,
                    now=SYNCED + 2 * dt.timedelta(days=3),
                )
                if pol.mode in (Mode.MANUAL, Mode.WEBHOOK):
                    assert decision.next_requeue is None
                else:
                    assert decision.next_requeue is not None
                    assert decision.next_requeue >= S


@pytest.mark.parametrize(
    ("pol", "call"),
    [(IMM, True), (IMM_IOC, True), (SCH, True), (SCH_IOC, True), (MAN, True), (MAN_IOC, True), (WEB_IOC, True)],
    ids=["immediate", "immediate-ioc", "scheduled", "scheduled-ioc", "manual", "manual-ioc", "webhook-ioc"],
)
def test_a_failed_reconcile_is_retried(pol: TriggerPolicy, call: bool) -> None:
    """A failed attempt stores no hash and no lastSync: the retry still sees a change and is not skipped.

    For `scheduled` without immediateOnCRChange the failed attempt was a due slot, so the retry is due too.
    """
    first_attempt = SYNCED + 15 * M
    for retry_at in (first_attempt + S, first_attempt + 30 * S, first_attempt + 10 * M):
        decision = decide(
            pol, spec_changed=True, webhook_requested=False, last_sync=SYNCED, created=CREATED, now=retry_at
        )
        assert decision.call_openstack is call, retry_at


def test_a_failed_webhook_reconcile_is_retried_while_the_request_is_pending() -> None:
    decision = decide(
        WEB, spec_changed=True, webhook_requested=True, last_sync=SYNCED, created=CREATED, now=SYNCED + MONTH
    )
    assert decision.call_openstack is True


def test_a_failed_first_reconcile_is_retried_when_never_synced() -> None:
    for pol in (IMM, MAN, WEB_IOC, SCH_IOC):
        decision = decide(
            pol, spec_changed=True, webhook_requested=False, last_sync=None, created=CREATED, now=CREATED + 3 * M
        )
        assert decision.call_openstack is True, pol.mode


def test_resync_interval_is_configurable() -> None:
    pol = parse_policy(None, resync=dt.timedelta(minutes=2))
    before = decide(pol, spec_changed=False, webhook_requested=False, last_sync=SYNCED, created=CREATED, now=SYNCED + M)
    assert (before.call_openstack, before.next_requeue) == (False, M)
    due = decide(
        pol, spec_changed=False, webhook_requested=False, last_sync=SYNCED, created=CREATED, now=SYNCED + 2 * M
    )
    assert (due.call_openstack, due.reason, due.next_requeue) == (True, "resync", 2 * M)


def test_scheduled_interval_follows_configuration() -> None:
    pol = policy("scheduled", interval="1h")
    waiting = decide(
        pol, spec_changed=True, webhook_requested=False, last_sync=SYNCED, created=CREATED, now=SYNCED + 20 * M
    )
    assert waiting == Decision(False, True, "waiting-for-schedule", 40 * M)
    due = decide(
        pol, spec_changed=False, webhook_requested=False, last_sync=SYNCED, created=CREATED, now=SYNCED + 60 * M
    )
    assert due == Decision(True, False, "schedule", 60 * M)


def test_scheduled_resync_setting_does_not_change_the_interval() -> None:
    pol = parse_policy({"mode": "scheduled", "interval": "30m"}, resync=dt.timedelta(minutes=1))
    decision = decide(
        pol, spec_changed=False, webhook_requested=False, last_sync=SYNCED, created=CREATED, now=SYNCED + 2 * M
    )
    assert decision == Decision(False, False, "unchanged", 28 * M)


# ---------------------------------------------------------------- decide with a cron schedule


HOURLY = policy("scheduled", schedule="0 * * * *")


@pytest.mark.parametrize(
    ("last_sync", "now", "changed", "expected"),
    [
        # not yet at the slot: wait until the top of the hour
        (
            dt.datetime(2026, 1, 10, 10, 5, tzinfo=dt.UTC),
            dt.datetime(2026, 1, 10, 10, 30, tzinfo=dt.UTC),
            False,
            Decision(False, False, "unchanged", 30 * M),
        ),
        (
            dt.datetime(2026, 1, 10, 10, 5, tzinfo=dt.UTC),
            dt.datetime(2026, 1, 10, 10, 30, tzinfo=dt.UTC),
            True,
            Decision(False, True, "waiting-for-schedule", 30 * M),
        ),
        # at the slot: call, then requeue for the next slot
        (
            dt.datetime(2026, 1, 10, 10, 5, tzinfo=dt.UTC),
            dt.datetime(2026, 1, 10, 11, 0, tzinfo=dt.UTC),
            False,
            Decision(True, False, "schedule", 60 * M),
        ),
        # late (e.g. after downtime): call at once; next requeue aligns to the next slot, not now + 1h
        (
            dt.datetime(2026, 1, 10, 10, 5, tzinfo=dt.UTC),
            dt.datetime(2026, 1, 10, 13, 20, tzinfo=dt.UTC),
            True,
            Decision(True, True, "schedule", 40 * M),
        ),
    ],
)
def test_decide_with_cron_schedule(last_sync: dt.datetime, now: dt.datetime, changed: bool, expected: Decision) -> None:
    decision = decide(
        HOURLY, spec_changed=changed, webhook_requested=False, last_sync=last_sync, created=CREATED, now=now
    )
    assert decision == expected


def test_cron_schedule_is_evaluated_in_its_time_zone() -> None:
    # 09:00 Berlin is 08:00 UTC in winter (CET) and 07:00 UTC in summer (CEST)
    pol = policy("scheduled", schedule="0 9 * * *", timezone="Europe/Berlin")
    winter = dt.datetime(2026, 1, 10, 7, 0, tzinfo=dt.UTC)
    decision = decide(
        pol, spec_changed=False, webhook_requested=False, last_sync=winter, created=CREATED, now=winter + M
    )
    assert decision == Decision(False, False, "unchanged", 59 * M)
    summer = dt.datetime(2026, 7, 10, 6, 0, tzinfo=dt.UTC)
    decision = decide(
        pol, spec_changed=False, webhook_requested=False, last_sync=summer, created=CREATED, now=summer + M
    )
    assert decision == Decision(False, False, "unchanged", 59 * M)
    at_slot = decide(
        pol,
        spec_changed=False,
        webhook_requested=False,
        last_sync=summer,
        created=CREATED,
        now=dt.datetime(2026, 7, 10, 7, 0, tzinfo=dt.UTC),
    )
    assert at_slot == Decision(True, False, "schedule", dt.timedelta(hours=24))


def test_cron_schedule_takes_precedence_over_interval() -> None:
    pol = policy("scheduled", schedule="*/30 * * * *", interval="2h")
    last = dt.datetime(2026, 1, 10, 10, 0, tzinfo=dt.UTC)
    decision = decide(
        pol, spec_changed=False, webhook_requested=False, last_sync=last, created=CREATED, now=last + 30 * M
    )
    assert decision == Decision(True, False, "schedule", 30 * M)


def test_next_due() -> None:
    anchor = dt.datetime(2026, 1, 10, 10, 7, tzinfo=dt.UTC)
    assert IMM.next_due(anchor) == anchor + 5 * M
    assert SCH.next_due(anchor) == anchor + 15 * M
    assert HOURLY.next_due(anchor) == dt.datetime(2026, 1, 10, 11, 0, tzinfo=dt.UTC)


# ---------------------------------------------------------------- durable webhook requests (on the object)


@pytest.mark.parametrize(
    ("annotation", "handled", "pending"),
    [
        (None, None, None),
        (None, "r1", None),
        ("r1", None, "r1"),
        ("r1", "r1", None),
        ("r2", "r1", "r2"),
        ("", None, None),
    ],
)
def test_a_request_is_pending_until_status_acknowledges_it(
    annotation: str | None, handled: str | None, pending: str | None
) -> None:
    obj: dict[str, Any] = {"metadata": {"name": "c"}, "status": {}}
    if annotation is not None:
        obj["metadata"]["annotations"] = {TRIGGER_ANNOTATION: annotation}
    if handled is not None:
        obj["status"][HANDLED_FIELD] = handled
    assert pending_trigger(obj) == pending


def test_the_patch_touches_metadata_only() -> None:
    patch = trigger_patch("20261202T103000Z-abc")
    assert patch == {"metadata": {"annotations": {TRIGGER_ANNOTATION: "20261202T103000Z-abc"}}}
    assert requested_trigger(patch) == "20261202T103000Z-abc"
