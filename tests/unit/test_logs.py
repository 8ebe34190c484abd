from __future__ import annotations

import json

import pytest
import structlog

from multinic_ctrl.logs import REDACTED, clear_secrets, configure_logging, register_secret


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    clear_secrets()  # other tests in this process registered theirs (e.g. the simulator's "admin")
    configure_logging("json", "debug", secrets=["hunter2-db-pass"])
    return capsys


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_secret_keys_and_values_are_redacted(json_logs: pytest.CaptureFixture[str]) -> None:
    register_secret("keystone-pw-123")
    log = structlog.get_logger("t")
    log.info(
        "Connecting",
        password="anything",
        token="gAAAAB-token",
        db="x",
        credentials={"password": "p1"},
        url="mysql://root:hunter2-db-pass@db/x",
        passwordSecretRef="my-secret",
    )
    log.warning("Auth failed", error="bad password keystone-pw-123 for admin")
    first, second = _lines(json_logs)
    assert first["event"] == "Connecting"
    assert first["password"] == REDACTED and first["token"] == REDACTED
    assert first["credentials"] == REDACTED
    assert first["url"] == f"mysql://root:{REDACTED}@db/x"
    assert first["passwordSecretRef"] == "my-secret", "a reference names a Secret; it is not one"
    assert second["error"] == f"bad password {REDACTED} for admin"


def test_exceptions_are_redacted(json_logs: pytest.CaptureFixture[str]) -> None:
    log = structlog.get_logger("t")
    try:
        raise RuntimeError("connect failed with hunter2-db-pass")
    except RuntimeError:
        log.exception("Failure")
    (line,) = _lines(json_logs)
    assert "hunter2-db-pass" not in json.dumps(line)
    assert REDACTED in str(line["exception"])


def test_stdlib_logging_goes_through_redaction(json_logs: pytest.CaptureFixture[str]) -> None:
    import logging

    logging.getLogger("aiohttp.client").warning("retrying with hunter2-db-pass")
    (line,) = _lines(json_logs)
    assert "hunter2-db-pass" not in json.dumps(line)


def test_console_format(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("console", "info")
    structlog.get_logger("t").info("Reconcile completed successfully", triggerMode="scheduled", nextRequeue="15m")
    out = capsys.readouterr().err
    assert "Reconcile completed successfully" in out and "triggerMode=scheduled" in out
