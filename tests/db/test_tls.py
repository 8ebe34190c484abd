"""TLS to MariaDB (`DB_SSL_*`) against the real server, which `scripts/local-mariadb` runs with a private CA.

TLS is optional on that server, so what a connection got is asked of the server itself: `Ssl_cipher` is the
session's cipher, empty for a plain-text session. Both ways the process connects are covered - the pool
(reconciles, `/readyz`, `plan`) and single connections (`migrate`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import aiomysql
import pytest
from structlog.testing import capture_logs

from multinic_ctrl.db import Database, DatabaseUnavailable
from multinic_ctrl.db.migrations import current_version, migrate
from multinic_ctrl.db.pool import _warn_unverified, connect_raw
from multinic_ctrl.settings import DatabaseSettings, load_settings
from tests.fakes.openstack.tls import make_self_signed

pytestmark = pytest.mark.db

# The test server's address under a name its certificate does not carry (127.0.0.1 and localhost): glibc
# resolves the short form to 127.0.0.1, while TLS checks it as a host name.
UNLISTED_NAME = "127.1"


@pytest.fixture
def server_ca() -> Path:
    path = os.environ.get("MULTINIC_TEST_DB_SSL_CA", "")
    if not path or not Path(path).is_file():
        pytest.fail(
            f"MULTINIC_TEST_DB_SSL_CA={path!r} names no CA bundle: run `scripts/local-mariadb up` and "
            '`eval "$(scripts/local-mariadb env)"` (the test MariaDB serves TLS with its own CA).'
        )
    return Path(path)


def _with(settings: DatabaseSettings, **changes: object) -> DatabaseSettings:
    return dataclasses.replace(settings, **changes)


async def _cipher(conn: aiomysql.Connection) -> str:
    async with conn.cursor() as cur:
        await cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        (_, value) = await cur.fetchone()
    return str(value)


async def _pool_cipher(settings: DatabaseSettings) -> str:
    database = Database(settings)
    try:
        async with database.connection() as conn:
            return await _cipher(conn)
    finally:
        await database.close()


async def _single_cipher(settings: DatabaseSettings) -> str:
    conn = await connect_raw(settings, database=settings.name)
    try:
        return await _cipher(conn)
    finally:
        conn.close()


async def test_a_ca_bundle_alone_encrypts_and_verifies_every_connection(database: Database, server_ca: Path) -> None:
    plain = database.settings
    settings = load_settings(
        {"db_ssl_ca": str(server_ca)},
        {
            "DB_HOST": plain.host,
            "DB_PORT": str(plain.port),
            "DB_USER": plain.user,
            "DB_PASSWORD": plain.password,
            "DB_NAME": plain.name,
        },
    ).database
    assert settings.ssl_mode == "verify-identity"
    assert await _pool_cipher(settings) != ""
    assert await _single_cipher(settings) != ""
    assert await migrate(settings) == []  # the migration path connects the same way
    assert await current_version(settings) >= 1
    assert await _pool_cipher(_with(settings, host="localhost")) != ""


async def test_disabled_connects_in_plain_text(database: Database) -> None:
    assert database.settings.ssl_mode == "disabled"
    assert await _pool_cipher(database.settings) == ""
    assert await _single_cipher(database.settings) == ""


async def test_a_server_signed_by_another_ca_is_refused_naming_tls_verification(
    database: Database, tmp_path: Path
) -> None:
    stranger = make_self_signed(tmp_path)  # a CA of its own, which never signed the server's certificate
    settings = _with(database.settings, ssl_mode="verify-ca", ssl_ca=str(stranger.cert_file))
    for attempt in (_pool_cipher, _single_cipher):
        with pytest.raises(DatabaseUnavailable) as info:
            await attempt(settings)
        message = str(info.value)
        assert "TLS verification of the server failed" in message, message
        assert f"{settings.host}:{settings.port}" in message
        assert settings.password not in message


async def test_verify_identity_checks_the_name_and_verify_ca_does_not(database: Database, server_ca: Path) -> None:
    renamed = _with(database.settings, host=UNLISTED_NAME, ssl_ca=str(server_ca))
    assert await _pool_cipher(_with(renamed, ssl_mode="verify-ca")) != ""
    with pytest.raises(DatabaseUnavailable, match=r"TLS verification of the server failed.*Hostname mismatch"):
        await _pool_cipher(_with(renamed, ssl_mode="verify-identity"))


async def test_required_encrypts_without_verifying_and_says_so_once(database: Database) -> None:
    settings = _with(database.settings, ssl_mode="required")
    _warn_unverified.cache_clear()
    with capture_logs() as logs:
        assert await _pool_cipher(settings) != ""
        assert await _single_cipher(settings) != ""
    warnings = [e for e in logs if e["log_level"] == "warning" and "does not verify the server" in e["event"]]
    assert len(warnings) == 1, logs
    assert settings.password not in str(logs)
