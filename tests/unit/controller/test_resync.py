"""Resync slots per identity (controller/resync.py) and how the trigger policy uses them."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multinic_ctrl.controller.reconciler import OpenstackConfigReconciler, ReconcilerDeps
from multinic_ctrl.controller.resync import (
    EPOCH,
    MIN_GAP,
    TOLERANCE,
    budgeted_interval,
    identity_phase,
    next_slot,
)
from multinic_ctrl.controller.trigger import Mode, TriggerPolicy, decide
from multinic_ctrl.controller.triggers import TriggerState
from multinic_ctrl.openstack import Credentials

S = dt.timedelta(seconds=1)
INTERVAL = 30 * S
NOW = dt.datetime(2026, 3, 1, 12, 0, 7, 250_000, tzinfo=dt.UTC)
IMM = TriggerPolicy(Mode.IMMEDIATE, resync=INTERVAL)


def creds(project: str = "p1", password: str = "pw", **extra: str) -> Credentials:
    return Credentials(
        auth_url="https://keystone:5000/v3", username="u", password=password, project_id=project, **extra
    )


def test_phase_is_stable_secret_free_and_per_identity() -> None:
    assert identity_phase(creds(), INTERVAL) == identity_phase(creds(), INTERVAL)
    assert identity_phase(creds(password="rotated"), INTERVAL) == identity_phase(creds(), INTERVAL)
    assert identity_phase(creds("p2"), INTERVAL) != identity_phase(creds(), INTERVAL)
    assert identity_phase(creds(region="r2"), INTERVAL) != identity_phase(creds(), INTERVAL)
    assert dt.timedelta(0) <= identity_phase(creds(), INTERVAL) < INTERVAL


def test_phases_spread_projects_over_the_interval() -> None:
    deciles = [0] * 10
    for k in range(2000):
        deciles[int(identity_phase(creds(f"project-{k}"), INTERVAL) / INTERVAL * 10)] += 1
    assert min(deciles) > 140 and max(deciles) < 260  # ~200 each


@settings(max_examples=300)
@given(
    st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2040, 1, 1)),
    st.integers(10, 7200),
    st.floats(0, 0.999),
)
def test_next_slot_is_the_first_slot_at_least_a_second_later(after: dt.datetime, seconds: int, fraction: float) -> None:
    after = after.replace(tzinfo=dt.UTC)
    interval = dt.timedelta(seconds=seconds)
    phase = interval * fraction
    slot = next_slot(after, interval, phase)
    assert slot >= after + MIN_GAP
    assert slot - interval < after + MIN_GAP
    offset = (slot - EPOCH - phase) % interval
    assert min(offset, interval - offset) < dt.timedelta(microseconds=2)


def test_configs_of_one_identity_come_due_together_whenever_they_synced() -> None:
    phase = identity_phase(creds(), INTERVAL)
    slot = next_slot(NOW, INTERVAL, phase)
    # Synced at scattered moments of the previous interval (creation, CR changes, the previous round).
    synced = [slot - INTERVAL + S * 1.5 + later for later in (0 * S, 3 * S, 17 * S, 27 * S)]
    check = slot - 5 * S

    def due(last: dt.datetime, phase: dt.timedelta | None) -> dt.datetime:
        d = decide(
            IMM, spec_changed=False, webhook_requested=False, last_sync=last, created=last, now=check, phase=phase
        )
        if d.call_openstack:
            return check
        assert d.next_requeue is not None
        return check + d.next_requeue

    assert len({due(last, None) for last in synced}) == 4  # counted from each own sync: four rounds
    assert {due(last, phase) for last in synced} == {slot}  # on the identity's slots: one
    for last in synced:
        on_time = decide(
            IMM, spec_changed=False, webhook_requested=False, last_sync=last, created=last, now=slot, phase=phase
        )
        assert on_time.call_openstack and on_time.reason == "resync"
        # Whenever in the round it is reconciled, the next resync is the identity's next slot.
        for late in (0 * S, 4 * S, 20 * S):
            after = decide(
                IMM,
                spec_changed=False,
                webhook_requested=False,
                last_sync=last,
                created=last,
                now=slot + late,
                phase=phase,
            )
            assert after.next_requeue is not None and slot + late + after.next_requeue == slot + INTERVAL


def test_a_slot_reached_a_hair_early_by_the_wall_clock_is_on_time() -> None:
    phase = identity_phase(creds(), INTERVAL)
    slot = next_slot(NOW, INTERVAL, phase)
    last = slot - INTERVAL
    hair = decide(
        IMM,
        spec_changed=False,
        webhook_requested=False,
        last_sync=last,
        created=last,
        now=slot - TOLERANCE,
        phase=phase,
    )
    assert hair.call_openstack and hair.next_requeue == INTERVAL + TOLERANCE
    before = decide(
        IMM,
        spec_changed=False,
        webhook_requested=False,
        last_sync=last,
        created=last,
        now=slot - 2 * TOLERANCE,
        phase=phase,
    )
    assert not before.call_openstack


def test_a_sync_right_before_a_slot_waits_for_the_next_one() -> None:
    phase = identity_phase(creds(), INTERVAL)
    slot = next_slot(NOW, INTERVAL, phase)
    just_before = slot - MIN_GAP * 0.8
    changed = decide(
        IMM, spec_changed=True, webhook_requested=False, last_sync=None, created=slot, now=just_before, phase=phase
    )
    assert changed.call_openstack and changed.next_requeue == INTERVAL + MIN_GAP * 0.8
    # Earlier in the interval it is due at the coming slot, however close: a long round stays aligned.
    earlier = slot - MIN_GAP * 1.2
    changed = decide(
        IMM, spec_changed=True, webhook_requested=False, last_sync=None, created=slot, now=earlier, phase=phase
    )
    assert changed.next_requeue == MIN_GAP * 1.2


def test_other_modes_ignore_the_phase() -> None:
    phase = identity_phase(creds(), INTERVAL)
    for pol in (
        TriggerPolicy(Mode.SCHEDULED, interval=15 * 60 * S),
        TriggerPolicy(Mode.MANUAL),
        TriggerPolicy(Mode.WEBHOOK),
        TriggerPolicy(Mode.SCHEDULED, interval=15 * 60 * S, immediate_on_cr_change=True),
    ):
        for elapsed in (S, 60 * S, 899 * S, 900 * S, 3600 * S):
            for changed in (True, False):
                args = {
                    "spec_changed": changed,
                    "webhook_requested": False,
                    "last_sync": NOW,
                    "created": NOW,
                    "now": NOW + elapsed,
                }
                assert decide(pol, **args, phase=phase) == decide(pol, **args)  # type: ignore[arg-type]


def test_a_config_checked_just_before_its_slot_comes_back_at_the_slot() -> None:
    phase = identity_phase(creds(), INTERVAL)
    slot = next_slot(NOW, INTERVAL, phase)
    last = slot - INTERVAL
    near = decide(
        IMM, spec_changed=False, webhook_requested=False, last_sync=last, created=last, now=slot - 0.7 * S, phase=phase
    )
    assert not near.call_openstack and near.next_requeue == 0.7 * S  # not a second later, with its peers gone


def reconciler_at(clock: list[dt.datetime]) -> OpenstackConfigReconciler:
    deps = ReconcilerDeps(
        kube=None,  # type: ignore[arg-type]
        configs=None,  # type: ignore[arg-type]
        repo=None,  # type: ignore[arg-type]
        openstack=None,  # type: ignore[arg-type]
        events=None,  # type: ignore[arg-type]
        triggers=TriggerState(IMM),
        clock=lambda: clock[0],
    )
    return OpenstackConfigReconciler(deps)


def test_requeues_count_from_the_decision_so_one_identity_stays_on_its_slot() -> None:
    phase = identity_phase(creds(), INTERVAL)
    slot = next_slot(NOW, INTERVAL, phase)
    decided = slot + 2 * S
    clock = [decided]
    reconciler = reconciler_at(clock)
    decision = decide(
        IMM,
        spec_changed=False,
        webhook_requested=False,
        last_sync=slot - INTERVAL,
        created=NOW,
        now=decided,
        phase=phase,
    )
    assert decision.next_requeue is not None
    for took in (0.01, 0.4, 3.0):  # reconciles of different lengths ...
        clock[0] = decided + took * S
        result = reconciler._requeue(decided, decision.next_requeue, phase)
        assert result.requeue_after is not None
        assert clock[0] + result.requeue_after * S == slot + INTERVAL  # ... all come back at the next slot
    clock[0] = slot + INTERVAL - 0.2 * S  # so slow that the slot is nearly gone: the one after, not alone
    result = reconciler._requeue(decided, decision.next_requeue, phase)
    assert result.requeue_after is not None and clock[0] + result.requeue_after * S == slot + 2 * INTERVAL


@pytest.mark.parametrize(
    ("configs", "seconds"),
    [(0, 300), (1, 300), (2, 150), (5, 60), (10, 30), (11, 30), (1000, 30)],
)
def test_the_default_interval_spends_the_old_per_config_budget_per_identity(configs: int, seconds: int) -> None:
    """Old default: one observation per config every 5 minutes. Shared observations spend that budget on
    freshness, never more: calls per hour never exceed the old default's, whatever the configs per project."""
    interval = budgeted_interval(dt.timedelta(seconds=30), configs)
    assert interval == dt.timedelta(seconds=seconds)
    old_per_hour = max(1, configs) * 3600 / 300
    assert 3600 / interval.total_seconds() <= old_per_hour


def test_a_longer_configured_floor_is_kept() -> None:
    assert budgeted_interval(dt.timedelta(minutes=10), 50) == dt.timedelta(minutes=10)
