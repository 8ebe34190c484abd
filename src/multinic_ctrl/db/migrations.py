"""Versioned schema migrations, safe to run from several replicas at once.

Each migration runs once, recorded in `schema_migrations`. A MariaDB named lock (`GET_LOCK`) serialises
concurrent runners: the second waits, then finds everything applied and does nothing. MariaDB commits DDL
implicitly, so each migration's statements are written to be re-runnable (`IF NOT EXISTS`): a runner that
dies between a statement and the version record leaves a state the next run completes.

Column contract: MISSION.md "Agent contract" - the node agent reads `multi_interface` joined with
`multi_subnet` by `subnet_id` and filters by `attached_node_name`, and writes only `netplan_success`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import structlog

from multinic_ctrl.db.fence import FENCE_ROW, FENCE_TABLE
from multinic_ctrl.db.pool import DatabaseUnavailable, connect_raw
from multinic_ctrl.settings import DatabaseSettings

log = structlog.get_logger(__name__)

LOCK_NAME = "multinic_schema_migrations"
LOCK_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_TIMESTAMPS = """
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    modified_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    deleted_at DATETIME(6) NULL DEFAULT NULL"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "agent contract tables and per-CR state",
        (
            f"""CREATE TABLE IF NOT EXISTS multi_subnet (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    subnet_id VARCHAR(64) NOT NULL,
    subnet_name VARCHAR(255) NOT NULL,
    cidr VARCHAR(64) NOT NULL,
    network_id VARCHAR(64) NOT NULL,
    status VARCHAR(32) NOT NULL DEFAULT 'active',{_TIMESTAMPS},
    UNIQUE KEY uq_multi_subnet_subnet_id (subnet_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
            f"""CREATE TABLE IF NOT EXISTS node_table (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    attached_node_id VARCHAR(64) NOT NULL,
    attached_node_name VARCHAR(255) NOT NULL,
    status VARCHAR(32) NOT NULL DEFAULT 'active',{_TIMESTAMPS},
    UNIQUE KEY uq_node_table_node_id (attached_node_id),
    UNIQUE KEY uq_node_table_node_name (attached_node_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
            # ON UPDATE CASCADE: a VM re-created under the same name (new UUID) or renamed is handled by
            # updating its node_table row; interface rows follow without breaking the foreign keys.
            f"""CREATE TABLE IF NOT EXISTS multi_interface (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    port_id VARCHAR(64) NOT NULL,
    subnet_id VARCHAR(64) NOT NULL,
    macaddress CHAR(17) NOT NULL,
    address VARCHAR(64) NULL,
    mtu INT NULL,
    attached_node_id VARCHAR(64) NOT NULL,
    attached_node_name VARCHAR(255) NOT NULL,
    cr_namespace VARCHAR(253) NOT NULL,
    cr_name VARCHAR(253) NOT NULL,
    status VARCHAR(32) NOT NULL DEFAULT 'active',
    netplan_success TINYINT(1) NOT NULL DEFAULT 0,{_TIMESTAMPS},
    UNIQUE KEY uq_multi_interface_port_id (port_id),
    KEY ix_multi_interface_node_name (attached_node_name),
    KEY ix_multi_interface_cr (cr_namespace, cr_name),
    CONSTRAINT fk_multi_interface_subnet FOREIGN KEY (subnet_id)
        REFERENCES multi_subnet (subnet_id) ON UPDATE CASCADE,
    CONSTRAINT fk_multi_interface_node_id FOREIGN KEY (attached_node_id)
        REFERENCES node_table (attached_node_id) ON UPDATE CASCADE,
    CONSTRAINT fk_multi_interface_node_name FOREIGN KEY (attached_node_name)
        REFERENCES node_table (attached_node_name) ON UPDATE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
            # The spec hash is stored in the same transaction as the rows, so it exists only for a
            # reconcile that succeeded (the original stored it first and then skipped failed work for 24 h).
            """CREATE TABLE IF NOT EXISTS cr_state (
    cr_namespace VARCHAR(253) NOT NULL,
    cr_name VARCHAR(253) NOT NULL,
    spec_hash CHAR(64) NOT NULL,
    last_sync_at DATETIME(6) NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    modified_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (cr_namespace, cr_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        ),
    ),
    Migration(2, "leader fence: a deposed leader's writes are refused (see db/fence.py)", (FENCE_TABLE, FENCE_ROW)),
)

LATEST_VERSION = MIGRATIONS[-1].version


async def migrate(settings: DatabaseSettings, *, database: str | None = None) -> list[int]:
    """Create the database if needed and apply pending migrations; returns the versions applied now."""
    name = database or settings.name
    conn = await connect_raw(settings)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SET SESSION sql_notes = 0")  # silence "already exists" notes
            await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            await cur.execute(f"USE `{name}`")
            await cur.execute("SELECT GET_LOCK(%s, %s)", (f"{LOCK_NAME}:{name}", LOCK_TIMEOUT_SECONDS))
            (got,) = await cur.fetchone()
            if got != 1:
                raise TimeoutError(f"another migration held the lock for more than {LOCK_TIMEOUT_SECONDS}s")
            try:
                return await _apply_pending(cur)
            finally:
                await cur.execute("SELECT RELEASE_LOCK(%s)", (f"{LOCK_NAME}:{name}",))
    finally:
        conn.close()


async def _apply_pending(cur: Any) -> list[int]:
    await cur.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INT NOT NULL PRIMARY KEY,
    description VARCHAR(255) NOT NULL,
    applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""
    )
    await cur.execute("SELECT version FROM schema_migrations")
    applied = {row[0] for row in await cur.fetchall()}
    newly: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in applied:
            continue
        log.info("Applying database migration", version=migration.version, description=migration.description)
        for statement in migration.statements:
            await cur.execute(statement)
        await cur.execute(
            "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
            (migration.version, migration.description),
        )
        newly.append(migration.version)
    return newly


async def current_version(settings: DatabaseSettings, *, database: str | None = None) -> int:
    conn = await connect_raw(settings, database=database or settings.name)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            (version,) = await cur.fetchone()
            return int(version)
    finally:
        conn.close()


async def migrate_until_done(settings: DatabaseSettings, stop: asyncio.Event) -> None:
    """Start-up migration that waits for MariaDB rather than crash-looping the pod while it comes up."""
    delay = 1.0
    while not stop.is_set():
        try:
            applied = await migrate(settings)
        except DatabaseUnavailable as exc:
            log.warning("Database not reachable yet; will retry migration", error=str(exc), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
            continue
        log.info("Database schema is up to date", database=settings.name, applied=applied)
        return
