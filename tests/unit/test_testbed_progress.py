"""The testbed's first run builds a venv and migrates schemas for minutes: it must say that it moves."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

_TESTBED = Path(__file__).resolve().parents[2] / "scripts" / "openstack_testbed" / "testbed.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("multinic_testbed_script", _TESTBED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_heartbeat_reports_elapsed_usual_and_the_logs_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    testbed = _load()
    logfile = tmp_path / "venv.log"
    logfile.write_text("Collecting keystone\nCollecting nova==31.0.0\n\n")
    with testbed.heartbeat("installing OpenStack", "4-8 min", logfile, every=0.1):
        time.sleep(0.35)
    lines = capsys.readouterr().err.splitlines()
    assert "installing OpenStack: usually 4-8 min" in lines[0]
    beats = [line for line in lines[1:] if "... installing OpenStack:" in line]
    assert len(beats) >= 2, lines
    assert all("(usually 4-8 min) | Collecting nova==31.0.0" in line for line in beats), beats


def test_heartbeat_stops_when_the_step_ends(capsys: pytest.CaptureFixture[str]) -> None:
    testbed = _load()
    with testbed.heartbeat("quick step", "1 s", None, every=0.05):
        pass
    time.sleep(0.2)
    err = capsys.readouterr().err
    assert "quick step: usually 1 s" in err
    assert "... quick step" not in err


def test_waiting_for_a_service_says_so_while_it_waits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    testbed = _load()
    clock = iter(range(0, 1000, 5))  # each call to time.time() advances 5 s
    monkeypatch.setattr(testbed.time, "time", lambda: float(next(clock)))
    monkeypatch.setattr(testbed.time, "sleep", lambda _s: None)
    answers = iter([False] * 6 + [True])
    testbed.wait_for("nova-api", lambda: next(answers), timeout=120)
    notes = [line for line in capsys.readouterr().err.splitlines() if "still waiting for nova-api" in line]
    assert notes and "of at most 120s" in notes[0], notes
