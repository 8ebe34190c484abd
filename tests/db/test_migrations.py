from __future__ import annotations

import asyncio

import pytest

from multinic_ctrl.db.migrations import LATEST_VERSION, MIGRATIONS, current_version, migrate
from tests.dbsupport import fresh_database, server_connection

pytestmark = pytest.mark.db


async def _tables(settings_db: object) -> set[str]:
    from multinic_ctrl.db import Database

    assert isinstance(settings_db, Database)
    async with settings_db.transaction("test") as cur:
        await cur.execute("SHOW TABLES")
        return {next(iter(r.values())) for r in await cur.fetchall()}


async def test_migrate_twice_is_a_no_op() -> None:
    async with fresh_database(migrated=False) as db:
        assert await migrate(db.settings) == [m.version for m in MIGRATIONS]
        assert await migrate(db.settings) == []
        assert await current_version(db.settings) == LATEST_VERSION
        assert {
            "multi_subnet",
            "node_table",
            "multi_interface",
            "cr_state",
            "schema_migrations",
        } <= await _tables(db)


async def test_concurrent_migrations_apply_each_version_once() -> None:
    async with fresh_database(migrated=False) as db:
        results = await asyncio.gather(*(migrate(db.settings) for _ in range(4)))
        assert sorted(results, key=len) == [[], [], [], [m.version for m in MIGRATIONS]]
        async with db.transaction("test") as cur:
            await cur.execute("SELECT version, COUNT(*) AS n FROM schema_migrations GROUP BY version")
            assert all(r["n"] == 1 for r in await cur.fetchall())


async def test_migrate_creates_missing_database() -> None:
    async with fresh_database(migrated=False) as db:
        admin = await server_connection(db.settings)
        async with admin.cursor() as cur:
            await cur.execute(f"DROP DATABASE `{db.name}`")
        admin.close()
        assert await migrate(db.settings) == [m.version for m in MIGRATIONS]


async def test_agent_contract_columns_exist() -> None:
    async with fresh_database() as db, db.transaction("test") as cur:
        expected = {
            "multi_subnet": {
                "subnet_id",
                "subnet_name",
                "cidr",
                "network_id",
                "status",
                "created_at",
                "modified_at",
                "deleted_at",
            },
            "node_table": {
                "attached_node_id",
                "attached_node_name",
                "status",
                "created_at",
                "modified_at",
                "deleted_at",
            },
            "multi_interface": {
                "id",
                "port_id",
                "subnet_id",
                "macaddress",
                "address",
                "mtu",
                "attached_node_id",
                "attached_node_name",
                "cr_namespace",
                "cr_name",
                "status",
                "netplan_success",
                "created_at",
                "modified_at",
                "deleted_at",
            },
        }
        for table, columns in expected.items():
            await cur.execute(
                "SELECT column_name AS c FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (db.name, table),
            )
            assert columns <= {r["c"] for r in await cur.fetchall()}, table
