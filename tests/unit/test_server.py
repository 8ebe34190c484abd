from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from multinic_ctrl.server import NotReady, ProbeServer


@pytest.fixture
async def server() -> AsyncIterator[ProbeServer]:
    srv = ProbeServer("127.0.0.1", 0)
    await srv.start()
    yield srv
    await srv.stop()


async def test_readyz_names_the_failing_check(server: ProbeServer) -> None:
    async def ok() -> None:
        return None

    async def broken() -> None:
        raise ConnectionError("cannot connect to MariaDB at db:3306")

    async def syncing() -> None:
        raise NotReady("caches not synced yet")

    server.add_readiness_check("informers", ok)
    server.add_readiness_check("database", broken)
    server.add_readiness_check("caches", syncing)
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{server.bound_port}/readyz") as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["failing"] == ["database", "caches"]
    # Unauthenticated: a driver's error text (host, port, user) stays in the log; our own words are shown.
    assert body["checks"] == {
        "informers": "ok",
        "database": "failing; the details are in the log",
        "caches": "caches not synced yet",
    }
    assert "db:3306" not in str(body)


async def test_healthz_fails_when_a_supervised_task_died(server: ProbeServer) -> None:
    dead: list[str] = []
    server.add_liveness_probe(lambda: dead)
    url = f"http://127.0.0.1:{server.bound_port}/healthz"
    async with aiohttp.ClientSession() as s:
        async with s.get(url) as resp:
            assert resp.status == 200
        dead.append("informer/openstackconfigs")
        async with s.get(url) as resp:
            assert resp.status == 503
            assert (await resp.json())["dead"] == ["informer/openstackconfigs"]


async def test_metrics_expose_product_metric_families(server: ProbeServer) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{server.bound_port}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    for family in (
        "multinic_openstack_request_duration_seconds",
        "multinic_database_operation_duration_seconds",
        "multinic_reconcile_total",
        "multinic_active_db_connections",
        "workqueue_depth",
    ):
        assert f"# TYPE {family}" in text


async def test_readyz_details_never_fail_readiness(server: ProbeServer) -> None:
    server.add_detail("leadership", lambda: "standby")
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{server.bound_port}/readyz") as resp:
        assert resp.status == 200
        assert (await resp.json())["details"] == {"leadership": "standby"}
