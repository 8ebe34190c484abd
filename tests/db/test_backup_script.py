"""The backup Job's script against the real MariaDB: `mariadb-dump --single-transaction` into a gzip file, restored
into a fresh database with identical rows; retention pruning after a real dump; a wrong password fails the run and
leaves no file. (tests/unit/operator/test_backup_script.py covers the script's edge cases with a stand-in dump.)"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from multinic_ctrl.db import Database
from multinic_ctrl.operator.backup_script import SCRIPT
from tests.dbsupport import fresh_database, server_connection
from tests.dbsupport import test_db_settings as db_settings

pytestmark = pytest.mark.db

ROWS = [(i, f"name-{i}", "ünïcødé ✓" if i % 7 == 0 else None, i * 1.5, f"{i % 256:02x}" * 3) for i in range(1, 501)]


def run_script(backups: Path, password_file: Path, database: str, **env: str) -> subprocess.CompletedProcess[str]:
    settings = db_settings(database)
    base = {
        "PATH": os.environ["PATH"],
        "BACKUP_DIR": str(backups),
        "DB_HOST": settings.host,
        "DB_PORT": str(settings.port),
        "DB_USER": settings.user,
        "DB_NAME": database,
        "DB_PASSWORD_FILE": str(password_file),
        "TMPDIR": str(backups.parent),
    }
    return subprocess.run(
        ["/bin/bash", "-c", SCRIPT], env={**base, **env}, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
async def source() -> AsyncIterator[Database]:
    async with fresh_database() as database:
        conn = await server_connection(db_settings(database.name))
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"USE `{database.name}`")
                await cur.execute(
                    "CREATE TABLE backup_probe (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, note TEXT NULL,"
                    " amount DOUBLE NOT NULL, raw VARBINARY(16) NOT NULL) DEFAULT CHARSET=utf8mb4"
                )
                await cur.executemany("INSERT INTO backup_probe VALUES (%s, %s, %s, %s, UNHEX(%s))", ROWS)
            await conn.commit()
        finally:
            conn.close()
        yield database


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(db_settings().password + "\n")
    path.chmod(0o600)
    return path


async def table_contents(name: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await server_connection(db_settings(name))
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"USE `{name}`")
            await cur.execute("SHOW TABLES")
            tables = sorted(str(row[0]) for row in await cur.fetchall())
            found = {}
            for table in tables:
                await cur.execute(f"SELECT * FROM `{table}` ORDER BY 1")
                found[table] = list(await cur.fetchall())
            return found
    finally:
        conn.close()


async def test_dump_and_restore_into_a_fresh_database_gives_identical_rows(
    source: Database, tmp_path: Path, password_file: Path
) -> None:
    backups = tmp_path / "backups"
    result = run_script(backups, password_file, source.name)
    assert result.returncode == 0, result.stderr
    (dump,) = sorted(backups.iterdir())
    assert dump.name.startswith(f"{source.name}-") and dump.name.endswith(".sql.gz")
    assert db_settings().password not in gzip.decompress(dump.read_bytes()).decode(errors="replace")

    target = f"multinic_restore_{uuid.uuid4().hex[:10]}"
    admin = await server_connection(db_settings())
    try:
        async with admin.cursor() as cur:
            await cur.execute(f"CREATE DATABASE `{target}` DEFAULT CHARSET=utf8mb4")
        settings = db_settings(target)
        cnf = tmp_path / "restore.cnf"
        cnf.write_text(f'[client]\npassword="{settings.password}"\n')
        restore = subprocess.run(  # the documented restore: gunzip -c FILE | mariadb DATABASE
            ["mariadb", f"--defaults-extra-file={cnf}", "--protocol=tcp", f"--host={settings.host}",
             f"--port={settings.port}", f"--user={settings.user}", target],
            input=gzip.decompress(dump.read_bytes()),
            capture_output=True,
            timeout=120,
            check=False,
        )  # fmt: skip
        assert restore.returncode == 0, restore.stderr
        original, restored = await table_contents(source.name), await table_contents(target)
        assert "backup_probe" in original and "multi_interface" in original
        assert restored == original
        assert len(restored["backup_probe"]) == len(ROWS)
    finally:
        async with admin.cursor() as cur:
            await cur.execute(f"DROP DATABASE IF EXISTS `{target}`")
        admin.close()


async def test_retention_prunes_after_a_real_dump(source: Database, tmp_path: Path, password_file: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    now = dt.datetime.now(dt.UTC)
    old = [f"{source.name}-{(now - dt.timedelta(hours=h)).strftime('%Y%m%dT%H%M%SZ')}.sql.gz" for h in (1, 2, 50)]
    for name in old:
        (backups / name).write_bytes(gzip.compress(b"-- old\n"))
    foreign = backups / "other-20200101T000000Z.sql.gz"
    foreign.write_bytes(b"not ours")
    result = run_script(backups, password_file, source.name, RETENTION_KEEP_LAST="3", RETENTION_MAX_AGE_MINUTES="1440")
    assert result.returncode == 0, result.stderr
    kept = sorted(p.name for p in backups.iterdir())
    new = [n for n in kept if n not in old and n != foreign.name]
    assert len(new) == 1
    # keepLast 3 would keep the 1h and 2h ones; maxAge 1d removes the 50h one either way.
    assert kept == sorted([*new, old[0], old[1], foreign.name])
    result = run_script(backups, password_file, source.name, RETENTION_KEEP_LAST="1")
    assert result.returncode == 0, result.stderr
    ours = sorted(p.name for p in backups.iterdir() if p.name.startswith(f"{source.name}-"))
    assert len(ours) == 1 and ours[0] >= new[0]  # only the newest real dump is left
    assert foreign.exists()  # files that are not this database's backups are never touched


async def test_a_wrong_password_fails_and_leaves_no_file(source: Database, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    backups = tmp_path / "backups"
    result = run_script(backups, wrong, source.name)
    assert result.returncode != 0
    assert "Access denied" in result.stderr
    assert list(backups.iterdir()) == []
