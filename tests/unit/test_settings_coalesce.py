"""RESYNC_INTERVAL's new default and OPENSTACK_COALESCE_WINDOW (issue 15 items 1 and 3)."""

from __future__ import annotations

import pytest

from multinic_ctrl.settings import SettingsError, load_settings


def test_defaults() -> None:
    s = load_settings({}, {})
    assert (s.controller.resync_seconds, s.controller.coalesce_window) == (30.0, 0.05)
    assert s.controller.resync_budgeted  # no RESYNC_INTERVAL: each identity spends the old per-config budget


def test_an_explicit_resync_interval_is_used_as_it_is() -> None:
    assert not load_settings({}, {"RESYNC_INTERVAL": "30s"}).controller.resync_budgeted
    assert not load_settings({"resync": "2m"}, {}).controller.resync_budgeted


@pytest.mark.parametrize(
    ("raw", "seconds"), [("0", 0.0), ("50ms", 0.05), ("0.2", 0.2), ("0.2s", 0.2), ("1500ms", 1.5), ("5s", 5.0)]
)
def test_window_values(raw: str, seconds: float) -> None:
    assert load_settings({}, {"OPENSTACK_COALESCE_WINDOW": raw}).controller.coalesce_window == pytest.approx(seconds)
    flag = load_settings({"openstack_coalesce_window": raw}, {"OPENSTACK_COALESCE_WINDOW": "1"})
    assert flag.controller.coalesce_window == pytest.approx(seconds)  # the flag wins


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("soon", "not a duration"),
        ("-1", "out of range"),
        ("6s", "out of range"),
        ("nan", "out of range"),
        ("inf", "out of range"),
    ],
)
def test_bad_windows_name_their_source(raw: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({}, {"OPENSTACK_COALESCE_WINDOW": raw})
    assert info.value.source == "OPENSTACK_COALESCE_WINDOW" and fragment in str(info.value)
