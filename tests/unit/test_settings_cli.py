from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from multinic_ctrl.cli import main
from multinic_ctrl.settings import SettingsError, load_settings
from tests.fakes.openstack.tls import make_self_signed


@pytest.mark.parametrize(
    ("env", "flags", "source", "fragment"),
    [
        ({"DB_PORT": "abc"}, {}, "DB_PORT", "'abc' is not a valid port"),
        ({"DB_PORT": "70000"}, {}, "DB_PORT", "out of range"),
        ({}, {"db_port": "x"}, "--db-port", "not a valid port"),
        ({"PROBE_PORT": "-1"}, {}, "PROBE_PORT", "out of range"),
        ({"LOG_FORMAT": "xml"}, {}, "LOG_FORMAT", "not a log format"),
        ({"LOG_LEVEL": "loud"}, {}, "LOG_LEVEL", "not a log level"),
        ({"DB_NAME": "multi;nic"}, {}, "DB_NAME", "not a valid database name"),
        ({"WATCH_NAMESPACES": "ok,Bad_NS"}, {}, "WATCH_NAMESPACES", "'Bad_NS' is not a valid namespace"),
        ({"DB_POOL_SIZE": "0"}, {}, "DB_POOL_SIZE", "out of range"),
        ({"DB_PASSWORD": "a", "DB_PASSWORD_FILE": "/x"}, {}, "DB_PASSWORD_FILE", "not both"),
        ({"DB_PASSWORD_FILE": "/nonexistent/pw"}, {}, "DB_PASSWORD_FILE", "cannot read /nonexistent/pw"),
    ],
)
def test_invalid_settings_name_their_source(
    env: dict[str, str], flags: dict[str, object], source: str, fragment: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(flags, env)
    assert info.value.source == source
    assert fragment in str(info.value)


def test_defaults_and_precedence(tmp_path: Path) -> None:
    defaults = load_settings({}, {})
    assert (
        defaults.database.host,
        defaults.database.port,
        defaults.database.user,
        defaults.database.name,
    ) == ("110.0.0.101", 30306, "multinic", "multinic")
    assert (defaults.database.ssl_mode, defaults.database.ssl_context()) == ("disabled", None)
    assert defaults.probe_port == 8082 and defaults.log_format == "console"
    assert load_settings({}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).log_format == "json"
    s = load_settings({"db_port": "3307", "db_host": None}, {"DB_PORT": "3306", "DB_HOST": "db"})
    assert (s.database.host, s.database.port) == ("db", 3307)
    pw = tmp_path / "pw"
    pw.write_text("s3cret-value\n")
    s = load_settings({}, {"DB_PASSWORD_FILE": str(pw), "WATCH_NAMESPACES": "b, a,a"})
    assert s.database.password == "s3cret-value"
    assert s.namespaces == ("a", "b")
    assert "s3cret-value" not in repr(s)
    assert s.secrets() == ("s3cret-value",)


def test_cli_exits_2_with_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PORT", "abc")
    with pytest.raises(SystemExit) as info:
        main(["migrate"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["multinic-ctrl: error: DB_PORT: 'abc' is not a valid port (expected an integer 1-65535)"]


def test_cli_unknown_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--no-such-flag"])
    assert info.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_python_m_entry_point_version_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "multinic_ctrl", "version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("multinic-ctrl ")
    helptext = subprocess.run(
        [sys.executable, "-m", "multinic_ctrl", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("run", "operator", "migrate", "version"):
        assert command in helptext
    run_help = subprocess.run(
        [sys.executable, "-m", "multinic_ctrl", "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "DB_HOST" in run_help and "--probe-port" in run_help


def test_leader_election_defaults_follow_the_run_mode() -> None:
    assert load_settings({}, {}).controller.leader_elect is False, "a local run is alone"
    assert load_settings({}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).controller.leader_elect is True
    assert (
        load_settings({"leader_elect": "false"}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}).controller.leader_elect
        is False
    )
    with pytest.raises(SettingsError, match="LEADER_ELECT: 'maybe' is not a boolean"):
        load_settings({}, {"LEADER_ELECT": "maybe"})


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    """A CA (also usable as a client certificate with its key), a second key, an encrypted key, a non-PEM file."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = make_self_signed(tmp_path / "a"), make_self_signed(tmp_path / "b")
    key = serialization.load_pem_private_key(first.key_file.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    return {
        "ca": str(first.cert_file),
        "key": str(first.key_file),
        "other_key": str(second.key_file),
        "encrypted_key": str(encrypted),
        "junk": str(junk),
        "dir": str(tmp_path),
    }


@pytest.mark.parametrize(
    ("env", "flags", "source", "fragment"),
    [
        ({"DB_SSL_MODE": "preferred"}, {}, "DB_SSL_MODE", "'preferred' is not a TLS mode (expected one of disabled,"),
        ({}, {"db_ssl_mode": "on"}, "--db-ssl-mode", "'on' is not a TLS mode"),
        ({"DB_SSL_CA": "/nonexistent/ca.pem"}, {}, "DB_SSL_CA", "/nonexistent/ca.pem does not exist"),
        ({"DB_SSL_CA": "{dir}"}, {}, "DB_SSL_CA", "is not a file"),
        ({"DB_SSL_CA": "{junk}"}, {}, "DB_SSL_CA", "cannot load CA certificates: no certificate or crl found"),
        ({}, {"db_ssl_ca": "{junk}"}, "--db-ssl-ca", "cannot load CA certificates"),
        ({"DB_SSL_CA": "{ca}", "DB_SSL_MODE": "disabled"}, {}, "DB_SSL_CA", "DB_SSL_MODE is 'disabled'"),
        ({"DB_SSL_CERT": "{ca}", "DB_SSL_KEY": "{key}"}, {}, "DB_SSL_CERT", "DB_SSL_MODE is 'disabled'"),
        ({"DB_SSL_CA": "{ca}", "DB_SSL_MODE": "required"}, {}, "DB_SSL_MODE", "use verify-ca or verify-identity"),
        ({"DB_SSL_CA": "{ca}", "DB_SSL_CERT": "{ca}"}, {}, "DB_SSL_CERT", "(DB_SSL_KEY is not set)"),
        ({"DB_SSL_CA": "{ca}", "DB_SSL_KEY": "{key}"}, {}, "DB_SSL_KEY", "(DB_SSL_CERT is not set)"),
        (
            {"DB_SSL_CA": "{ca}", "DB_SSL_CERT": "{ca}", "DB_SSL_KEY": "{other_key}"},
            {},
            "DB_SSL_CERT",
            "cannot load the client certificate and key",
        ),
        (
            {"DB_SSL_CA": "{ca}", "DB_SSL_CERT": "{ca}", "DB_SSL_KEY": "{encrypted_key}"},
            {},
            "DB_SSL_KEY",
            "the key is encrypted",
        ),
    ],
)
def test_invalid_database_tls_settings_name_their_source(
    tls_files: dict[str, str], env: dict[str, str], flags: dict[str, object], source: str, fragment: str
) -> None:
    env = {k: v.format(**tls_files) for k, v in env.items()}
    flags = {k: str(v).format(**tls_files) for k, v in flags.items()}
    with pytest.raises(SettingsError) as info:
        load_settings(flags, env)
    assert info.value.source == source
    assert fragment in str(info.value)


def test_database_tls_modes_follow_mysql_conventions(tls_files: dict[str, str]) -> None:
    ca = tls_files["ca"]
    db = load_settings({}, {"DB_SSL_CA": ca}).database
    assert (db.ssl_mode, db.ssl_ca) == ("verify-identity", ca), "a CA alone verifies everything"
    context = db.ssl_context()
    assert context is not None and context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED

    db = load_settings({"db_ssl_mode": "VERIFY_CA"}, {"DB_SSL_CA": ca, "DB_SSL_MODE": "verify-identity"}).database
    assert db.ssl_mode == "verify-ca", "flags win; MySQL's upper-case spelling is accepted"
    context = db.ssl_context()
    assert context is not None and not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED

    db = load_settings({}, {"DB_SSL_MODE": "required"}).database
    context = db.ssl_context()
    assert context is not None and not context.check_hostname and context.verify_mode == ssl.CERT_NONE

    db = load_settings({}, {"DB_SSL_MODE": "verify-identity"}).database
    assert db.ssl_ca is None and db.ssl_context() is not None, "without a CA the system CAs are used"

    db = load_settings({}, {"DB_SSL_CA": ca, "DB_SSL_CERT": ca, "DB_SSL_KEY": tls_files["key"]}).database
    assert (db.ssl_cert, db.ssl_key) == (ca, tls_files["key"])
    assert db.ssl_context() is not None
    assert tls_files["key"] in repr(db), "paths are not secrets; the password stays out of repr"


def test_cli_tls_mode_error_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_SSL_MODE", "preferred")
    with pytest.raises(SystemExit) as info:
        main(["migrate"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "multinic-ctrl: error: DB_SSL_MODE: 'preferred' is not a TLS mode "
        "(expected one of disabled, required, verify-ca, verify-identity)"
    ]
