"""`multinic-ctrl operator` settings: its own namespaces, workers and resync, the shared leader-election settings, and
no database needed."""

from __future__ import annotations

import pytest

from multinic_ctrl.cli import build_parser
from multinic_ctrl.settings import SettingsError, load_settings


def test_defaults_and_environment() -> None:
    settings = load_settings({}, {})
    assert settings.operator.namespaces == () and settings.operator.workers == 2
    assert settings.operator.leader_election_name == "multinic-operator"
    assert not settings.operator.leader_elect  # local run
    env = {
        "OPERATOR_NAMESPACES": "b, a",
        "OPERATOR_WORKERS": "3",
        "OPERATOR_RESYNC_INTERVAL": "2m",
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "POD_NAMESPACE": "ops",
    }
    op = load_settings({}, env).operator
    assert (op.namespaces, op.workers, op.resync_seconds) == (("a", "b"), 3, 120.0)
    assert op.leader_elect and op.leader_election_namespace == "ops"


def test_flags_win_and_bad_values_name_the_source() -> None:
    args = build_parser().parse_args(["operator", "--operator-namespaces", "x", "--leader-elect", "true"])
    op = load_settings(vars(args), {"OPERATOR_NAMESPACES": "y"}).operator
    assert op.namespaces == ("x",) and op.leader_elect
    with pytest.raises(SettingsError, match="OPERATOR_NAMESPACES"):
        load_settings({}, {"OPERATOR_NAMESPACES": "Not_A_Namespace"})
    with pytest.raises(SettingsError, match="--operator-workers"):
        load_settings({"operator_workers": "0"}, {})
