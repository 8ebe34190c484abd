"""The bounds on waiting: DB_STATEMENT_TIMEOUT, DB_TRANSACTION_TIMEOUT, RECONCILE_TIMEOUT, STALL_TIMEOUT."""

from __future__ import annotations

import pytest

from multinic_ctrl.cli import main
from multinic_ctrl.settings import SettingsError, load_settings


def test_defaults_and_precedence() -> None:
    s = load_settings({}, {})
    assert (s.database.statement_timeout, s.database.transaction_timeout) == (10.0, 30.0)
    assert (s.controller.reconcile_timeout, s.controller.stall_timeout) == (150.0, 300.0)
    s = load_settings(
        {"db_statement_timeout": "5s", "stall_timeout": "10m"},
        {
            "DB_STATEMENT_TIMEOUT": "20",
            "DB_TRANSACTION_TIMEOUT": "1m",
            "RECONCILE_TIMEOUT": "2m",
            "STALL_TIMEOUT": "3m",
        },
    )
    assert (s.database.statement_timeout, s.database.transaction_timeout) == (5.0, 60.0)
    assert (s.controller.reconcile_timeout, s.controller.stall_timeout) == (120.0, 600.0)


@pytest.mark.parametrize(
    ("env", "flags", "source", "fragment"),
    [
        ({"DB_STATEMENT_TIMEOUT": "soon"}, {}, "DB_STATEMENT_TIMEOUT", "not a duration"),
        ({"DB_STATEMENT_TIMEOUT": "0.5"}, {}, "DB_STATEMENT_TIMEOUT", "too short"),
        ({"DB_STATEMENT_TIMEOUT": "inf"}, {}, "DB_STATEMENT_TIMEOUT", "at most a day"),
        ({"DB_TRANSACTION_TIMEOUT": "nan"}, {}, "DB_TRANSACTION_TIMEOUT", "at most a day"),
        ({"DB_TRANSACTION_TIMEOUT": "5s"}, {}, "DB_TRANSACTION_TIMEOUT", "shorter than DB_STATEMENT_TIMEOUT (10s)"),
        ({}, {"db_transaction_timeout": "5"}, "--db-transaction-timeout", "shorter than DB_STATEMENT_TIMEOUT"),
        ({"RECONCILE_TIMEOUT": "-1"}, {}, "RECONCILE_TIMEOUT", "too short"),
        ({"STALL_TIMEOUT": "2m"}, {}, "STALL_TIMEOUT", "longer than RECONCILE_TIMEOUT (150s)"),
        ({"RECONCILE_TIMEOUT": "6m"}, {}, "STALL_TIMEOUT", "longer than RECONCILE_TIMEOUT (360s)"),
        ({}, {"stall_timeout": "x"}, "--stall-timeout", "not a duration"),
    ],
)
def test_invalid_timeouts_name_their_source(
    env: dict[str, str], flags: dict[str, object], source: str, fragment: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(flags, env)
    assert info.value.source == source
    assert fragment in str(info.value)


def test_cli_exits_2_naming_the_variable(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT", "forever")
    with pytest.raises(SystemExit) as info:
        main(["migrate"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "multinic-ctrl: error: DB_STATEMENT_TIMEOUT: 'forever' is not a duration (e.g. 300, 90s, 5m, 1h)"
    ]
    monkeypatch.delenv("DB_STATEMENT_TIMEOUT")
    with pytest.raises(SystemExit) as info:
        main(["run", "--reconcile-timeout", "10m"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "multinic-ctrl: error: STALL_TIMEOUT: must be longer than --reconcile-timeout (600s)"
    ]
