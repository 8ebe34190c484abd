"""/readyz follows a real MariaDB going away and coming back, without restarting the process.

The test runs its own MariaDB instance (scripts/local-mariadb with a private directory and port) so stopping
it does not disturb the shared test server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from multinic_ctrl.db import Database
from multinic_ctrl.server import ProbeServer
from multinic_ctrl.settings import DatabaseSettings
from tests.dbsupport import PrivateMariaDB

pytestmark = pytest.mark.db


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    with PrivateMariaDB.running(tmp_path / "mariadb") as instance:
        yield instance


async def _readyz(session: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, object]]:
    async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
        return resp.status, await resp.json()


async def _wait_for(session: aiohttp.ClientSession, port: int, status: int) -> dict[str, object]:
    body: dict[str, object] = {}
    for _ in range(100):
        code, body = await _readyz(session, port)
        if code == status:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz never answered {status}; last body {body}")


async def test_readyz_follows_database_availability(private_mariadb: PrivateMariaDB) -> None:
    settings = DatabaseSettings(
        host="127.0.0.1",
        port=private_mariadb.port,
        user="root",
        password="multinic-dev",
        name="mysql",
        connect_timeout=1.0,
    )
    database = Database(settings)
    server = ProbeServer("127.0.0.1", 0)
    server.add_readiness_check("database", database.ping)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            port = server.bound_port
            await _wait_for(session, port, 200)

            await asyncio.to_thread(private_mariadb.run, "down")
            body = await _wait_for(session, port, 503)
            assert body["failing"] == ["database"]
            checks = body["checks"]
            assert isinstance(checks, dict) and checks["database"] == "failing; the details are in the log"
            # /readyz is unauthenticated: no password, host, port or user in it (they are in the log).
            for private in ("multinic-dev", str(private_mariadb.port), "127.0.0.1", "root", "MariaDB"):
                assert private not in str(body)
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200, "a database outage must not fail liveness"

            await asyncio.to_thread(private_mariadb.run, "up")
            body = await _wait_for(session, port, 200)
            assert body["checks"] == {"database": "ok"}
    finally:
        await server.stop()
        await database.close()
