"""MariaDB vanishes mid-transaction without a reset (a host gone behind a Service), then comes back.

The controller runs in-process against the real apiserver, the simulator and the real MariaDB - reached through a
proxy that black-holes on the reconcile's first interface INSERT: the transaction has locked rows and written the
new node, then nothing more gets through and nothing says so. Expected: the statement is abandoned within
DB_STATEMENT_TIMEOUT, nothing of it is committed, status says DatabaseUnavailable, /healthz stays green (the
workers go on failing fast, which is progress; restarting would not bring the database back), and once the
network heals the key is retried and converges; no worker, key or pooled connection stays wedged.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from multinic_ctrl.db import Database
from multinic_ctrl.metrics import REGISTRY
from tests.e2e.harness import Env, config_body, wait_for
from tests.support.blackhole import BlackholeProxy

pytestmark = pytest.mark.e2e

STATEMENT, TRANSACTION = 1.0, 3.0


def _timed_out_applies() -> tuple[float, float]:
    """(count, total seconds) of apply transactions abandoned on a bound, measured where they were abandoned."""
    labels = {"operation": "apply", "result": "timeout"}
    count = REGISTRY.get_sample_value("multinic_database_operation_duration_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("multinic_database_operation_duration_seconds_sum", labels) or 0.0
    return count, total


async def _committed(database: Database) -> dict[str, list[Any]]:
    async with database.transaction("test") as cur:
        await cur.execute("SELECT attached_node_name, macaddress FROM multi_interface ORDER BY id")
        interfaces = [(r["attached_node_name"], r["macaddress"]) for r in await cur.fetchall()]
        await cur.execute("SELECT attached_node_name FROM node_table ORDER BY attached_node_name")
        nodes = [r["attached_node_name"] for r in await cur.fetchall()]
    return {"interfaces": interfaces, "nodes": nodes}


async def test_database_black_holed_mid_transaction(env: Env) -> None:
    direct = env.database  # the same database, not through the proxy: what is really committed
    await env.stop()
    async with BlackholeProxy.running(direct.settings.host, direct.settings.port) as proxy:
        settings = replace(
            direct.settings,
            port=proxy.port,
            connect_timeout=1.0,
            statement_timeout=STATEMENT,
            transaction_timeout=TRANSACTION,
        )
        proxied = Database(settings)
        env.database = proxied
        env.settings = replace(env.settings, database=settings)
        await env.start(reconcile_timeout=20.0, stall_timeout=30.0)
        try:
            await env.create(config_body("cfg", ["test-vm-1"], env.sim))
            await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced")
            before = await _committed(direct)
            assert before["nodes"] == ["test-vm-1"]

            timed_out_before = _timed_out_applies()
            proxy.blackhole_on(b"INSERT INTO multi_interface")
            await env.patch("cfg", {"spec": {"vmNames": ["test-vm-1", "test-vm-2"]}})
            status = await env.wait_status(
                "cfg", lambda s: s.get("reason") == "DatabaseUnavailable", "database error in status", timeout=20
            )
            assert proxy.holed_at is not None
            status_after = time.monotonic() - proxy.holed_at  # + status write, poll, console log rendering
            assert "DB_STATEMENT_TIMEOUT" in status["message"], status["message"]
            count, total = (now - before for now, before in zip(_timed_out_applies(), timed_out_before, strict=True))
            assert count == 1, "one apply transaction abandoned on its statement bound"
            assert STATEMENT <= total < STATEMENT + 1.0, total  # the whole transaction, from BEGIN to giving up
            assert await _committed(direct) == before, "nothing of the cut-off transaction was committed"
            code, _ = await env.http("GET", "/healthz")
            assert code == 200, "a database outage is not a reason to restart"
            code, body = await env.http("GET", "/readyz")
            assert code == 503 and body["failing"] == ["database"]

            # The network heals; the session the proxy swallowed stays orphaned on the server (its client's reset
            # never arrives) until the server's own idle_transaction_timeout ends it.
            proxy.heal()
            healed = time.monotonic()
            await env.wait_status(
                "cfg",
                lambda s: s.get("phase") == "Synced" and s.get("vmsFound") == 2,
                "converged after the network healed",
                timeout=30,
            )
            recovered_after = time.monotonic() - healed
            after = await _committed(direct)
            assert after["nodes"] == ["test-vm-1", "test-vm-2"]
            assert [node for node, _ in after["interfaces"]] == ["test-vm-1", "test-vm-2"]

            service = env.service
            assert service is not None and service.controller is not None
            controller = service.controller
            await wait_for(lambda: not controller.queue.processing and proxied.active == 0, "workers free")
            assert proxy.stalled == 0, "the client let go of the black-holed connection"
            assert controller.stalled() == []
            code, _ = await env.http("GET", "/healthz")
            assert code == 200
            print(
                f"transaction abandoned after {total:.2f}s; status DatabaseUnavailable seen {status_after:.2f}s after "
                f"the black hole; Synced {recovered_after:.2f}s after healing"
            )
        finally:
            try:
                await env.stop()
            finally:
                proxy.heal(reset_stalled=True)  # whatever still hangs on the proxy gets a reset
                await asyncio.wait_for(proxied.close(), 10)
                env.database = direct
