"""The pool pings a connection on check-out only when it has been idle (db/pool.py, `PING_AFTER_IDLE`): a
connection in steady use makes no extra round trip per transaction, an idle one is still checked (and revived
after a server restart) before the caller's first statement."""

from __future__ import annotations

import asyncio
from typing import Any

import aiomysql
import pytest

from multinic_ctrl.db import Database, pool

pytestmark = pytest.mark.db


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    original = aiomysql.Connection.ping

    async def counting(self: aiomysql.Connection, reconnect: bool = True) -> Any:
        seen.append(1)
        return await original(self, reconnect)

    monkeypatch.setattr(aiomysql.Connection, "ping", counting)
    return seen


async def connection_id(db: Database) -> int:
    async with db.transaction("test") as cur:
        await cur.execute("SELECT CONNECTION_ID() AS id")
        row = await cur.fetchone()
    return int(row["id"])


async def test_a_connection_in_steady_use_is_not_pinged(database: Database, pings: list[int]) -> None:
    first = await connection_id(database)
    pings.clear()
    for _ in range(20):
        assert await connection_id(database) == first
    assert pings == []


async def test_an_idle_connection_is_pinged_first(
    database: Database, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "PING_AFTER_IDLE", 0.05)
    await connection_id(database)
    pings.clear()
    await asyncio.sleep(0.1)
    await connection_id(database)
    assert pings == [1]


async def test_an_idle_connection_the_server_dropped_is_revived_by_the_ping(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "PING_AFTER_IDLE", 0.05)
    victim = await connection_id(database)
    async with fresh_admin(database) as admin:
        await admin.execute(f"KILL CONNECTION {victim}")
    await asyncio.sleep(0.1)
    assert await connection_id(database) != victim  # no error: the ping reconnected


async def test_a_busy_connection_the_server_closed_is_replaced_without_a_ping(
    database: Database, pings: list[int]
) -> None:
    """Within the idle window there is no ping, but a connection the server closed is not handed out: the pool
    sees the closed socket and opens another. (One that dies without a word - a partition - fails the
    caller's first round trip, bounded by DB_STATEMENT_TIMEOUT, as it would fail a ping.)"""
    victim = await connection_id(database)
    async with fresh_admin(database) as admin:
        await admin.execute(f"KILL CONNECTION {victim}")
    await asyncio.sleep(0.05)  # the server's FIN reaches the event loop
    pings.clear()
    assert await connection_id(database) != victim
    assert pings == []


class fresh_admin:
    """A separate connection, outside the pool under test."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._conn: aiomysql.Connection | None = None

    async def __aenter__(self) -> aiomysql.Cursor:
        s = self._database.settings
        self._conn = await aiomysql.connect(host=s.host, port=s.port, user=s.user, password=s.password, autocommit=True)
        return await self._conn.cursor()

    async def __aexit__(self, *exc: object) -> None:
        assert self._conn is not None
        self._conn.close()


async def test_each_transaction_starts_fresh_on_a_reused_connection(database: Database) -> None:
    """Transactions begin with their first statement (no BEGIN round trip): a reused connection must not carry
    the previous transaction's snapshot, and a failed transaction must leave nothing behind."""
    async with database.transaction("test") as cur:
        await cur.execute("CREATE TABLE IF NOT EXISTS fresh_check (n INT)")
    first = await connection_id(database)
    async with database.transaction("test") as cur:
        await cur.execute("SELECT COUNT(*) AS n FROM fresh_check")
        assert (await cur.fetchone())["n"] == 0
    async with fresh_admin(database) as admin:
        await admin.execute(f"INSERT INTO `{database.name}`.fresh_check VALUES (1)")
    async with database.transaction("test") as cur:
        await cur.execute("SELECT COUNT(*) AS n, CONNECTION_ID() AS id FROM fresh_check")
        row = await cur.fetchone()
    assert (row["n"], row["id"]) == (1, first)  # same connection, new snapshot
    with pytest.raises(RuntimeError):
        async with database.transaction("test") as cur:
            await cur.execute("INSERT INTO fresh_check VALUES (2)")
            raise RuntimeError("the caller fails mid-transaction")
    async with database.transaction("test") as cur:
        await cur.execute("SELECT COUNT(*) AS n FROM fresh_check")
        assert (await cur.fetchone())["n"] == 1
