"""Access to the real MariaDB the tests run against, and fresh per-test databases on it.

Connection details come from MULTINIC_TEST_DB_* (defaults: the private instance `scripts/local-mariadb up`
starts). An unreachable server fails the test with instructions: a skipped database test proves nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomysql

from multinic_ctrl.db import Database, DatabaseError
from multinic_ctrl.db.migrations import migrate
from multinic_ctrl.db.pool import connect_raw
from multinic_ctrl.settings import DatabaseSettings


def test_db_settings(name: str = "multinic") -> DatabaseSettings:
    return DatabaseSettings(
        host=os.environ.get("MULTINIC_TEST_DB_HOST", "127.0.0.1"),
        port=int(os.environ.get("MULTINIC_TEST_DB_PORT", "33306")),
        user=os.environ.get("MULTINIC_TEST_DB_USER", "root"),
        password=os.environ.get("MULTINIC_TEST_DB_PASSWORD", "multinic-dev"),
        name=name,
        pool_size=10,
    )


async def server_connection(settings: DatabaseSettings) -> aiomysql.Connection:
    try:
        return await connect_raw(settings)
    except DatabaseError as exc:
        raise RuntimeError(
            f"MariaDB for tests is not reachable ({exc}). "
            "Start it with `scripts/local-mariadb up` (or set MULTINIC_TEST_DB_HOST/PORT/USER/PASSWORD)."
        ) from exc


@asynccontextmanager
async def fresh_database(*, migrated: bool = True) -> AsyncIterator[Database]:
    """A new, uniquely named database (dropped afterwards) with the schema applied."""
    name = f"multinic_test_{uuid.uuid4().hex[:12]}"
    settings = test_db_settings(name)
    admin = await server_connection(settings)
    try:
        if migrated:
            await migrate(settings)
        else:
            async with admin.cursor() as cur:
                await cur.execute(f"CREATE DATABASE `{name}`")
        database = Database(settings)
        try:
            yield database
        finally:
            await database.close()
            async with admin.cursor() as cur:
                await cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        admin.close()


SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "local-mariadb"


class PrivateMariaDB:
    """A MariaDB instance of the test's own (scripts/local-mariadb with a private dir and port), so a test
    can stop and start a real server without disturbing the shared one."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.env = {**os.environ, "MULTINIC_MARIADB_DIR": str(directory), "MULTINIC_MARIADB_PORT": str(self.port)}

    def run(self, action: str) -> None:
        subprocess.run([str(SCRIPT), action], env=self.env, check=True, timeout=120)

    def settings(self, name: str = "multinic") -> DatabaseSettings:
        return DatabaseSettings(
            host="127.0.0.1", port=self.port, user="root", password="multinic-dev", name=name, connect_timeout=1.0
        )

    @classmethod
    @contextlib.contextmanager
    def running(cls, directory: Path) -> Iterator[PrivateMariaDB]:
        instance = cls(directory)
        instance.run("up")
        try:
            yield instance
        finally:
            instance.run("down")
