"""kube.conditions: the generic condition merge shared by the controller and the operator."""

from __future__ import annotations

import datetime as dt

import pytest

from multinic_ctrl.kube.conditions import Condition, merge_conditions, rfc3339

T0 = dt.datetime(2026, 1, 10, 8, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(hours=1)


def test_rfc3339() -> None:
    assert rfc3339(dt.datetime(2026, 1, 10, 8, 0, 5, 999999, tzinfo=dt.UTC)) == "2026-01-10T08:00:05Z"
    assert rfc3339(dt.datetime(2026, 7, 10, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == "2026-07-10T08:00:00Z"


@pytest.mark.parametrize(("status", "text"), [(True, "True"), (False, "False"), (None, "Unknown")])
def test_status_text(status: bool | None, text: str) -> None:
    assert Condition("X", status, "R", "m").status_text == text


@pytest.mark.parametrize(
    ("before", "after", "moves"),
    [
        (True, True, False),
        (False, False, False),
        (None, None, False),
        (True, False, True),
        (False, True, True),
        (None, True, True),
        (True, None, True),
    ],
)
def test_transition_time_moves_only_on_a_flip(before: bool | None, after: bool | None, moves: bool) -> None:
    first = merge_conditions(None, [Condition("Ready", before, "A", "one")], generation=1, now=T0)
    second = merge_conditions(first, [Condition("Ready", after, "B", "two")], generation=2, now=T1)
    assert second[0]["lastTransitionTime"] == rfc3339(T1 if moves else T0)
    assert (second[0]["reason"], second[0]["message"], second[0]["observedGeneration"]) == ("B", "two", 2)


def test_order_and_conditions_not_spoken_about() -> None:
    previous = merge_conditions(
        None, [Condition("Zeta", True, "z", "z"), Condition("Alpha", True, "a", "a")], generation=1, now=T0
    )
    merged = merge_conditions(
        previous,
        [Condition("Ready", False, "r", "r"), Condition("Other", True, "o", "o")],
        generation=2,
        now=T1,
        order=("Ready", "Alpha"),
    )
    assert [c["type"] for c in merged] == ["Ready", "Alpha", "Other", "Zeta"]
    assert next(c for c in merged if c["type"] == "Zeta")["observedGeneration"] == 1  # kept as it was


def test_recomputing_gives_the_same_document() -> None:
    conds = [Condition("Ready", True, "Ok", "fine"), Condition("Backup", None, "NoBackupYet", "none")]
    first = merge_conditions(None, conds, generation=4, now=T0)
    assert merge_conditions(first, conds, generation=4, now=T1) == first
