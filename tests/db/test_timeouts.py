"""Database I/O that never returns: a real MariaDB behind a proxy that black-holes (sockets open, nothing
forwarded, no reset), and a real lock held by another session.

What must hold: a statement is abandoned at DB_STATEMENT_TIMEOUT and a transaction at DB_TRANSACTION_TIMEOUT;
the connection is discarded, not pooled; nothing of the abandoned transaction is ever committed; the server itself
ends what the client could not tell it to end (max_statement_time, idle_transaction_timeout); and once the
network is back the next attempt succeeds - nothing stays wedged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from multinic_ctrl.db import Database, DatabaseUnavailable, DesiredState, InterfaceRow, NodeRow, Repository, SubnetRow
from multinic_ctrl.db.pool import DatabaseTimeout, connect_raw
from tests.support.blackhole import BlackholeProxy

pytestmark = pytest.mark.db

T = TypeVar("T")

SUBNET = SubnetRow("sub-1", "k8s-subnet", "192.168.100.0/24", "net-1")
VM1, VM2 = NodeRow("uuid-1", "test-vm-1"), NodeRow("uuid-2", "test-vm-2")
PORT1 = InterfaceRow("port-1", "sub-1", "fa:16:3e:00:00:01", "192.168.100.11", 1450, "uuid-1", "test-vm-1")
PORT2 = InterfaceRow("port-2", "sub-1", "fa:16:3e:00:00:02", "192.168.100.12", 1450, "uuid-2", "test-vm-2")
BEFORE = DesiredState(subnets=(SUBNET,), nodes=(VM1,), interfaces=(PORT1,))
AFTER = DesiredState(subnets=(SUBNET,), nodes=(VM1, VM2), interfaces=(PORT1, PORT2))

STATEMENT, TRANSACTION = 1.0, 3.0


async def within(seconds: float, step: Awaitable[T]) -> T:
    """`step`'s result, or a failure if it has not finished after `seconds` - without waiting for it to unwind
    (a hung driver would hang `wait_for` too). The proxy's teardown resets whatever is left."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        raise AssertionError(f"still waiting after {seconds}s: database I/O without a bound")
    return task.result()


async def failure_within(seconds: float, step: Awaitable[Any]) -> BaseException:
    async def run() -> BaseException:
        try:
            await step
        except BaseException as exc:  # the failure is the result
            return exc
        raise AssertionError("expected a failure")

    return await within(seconds, run())


@pytest.fixture
async def proxy(database: Database) -> AsyncIterator[BlackholeProxy]:
    async with BlackholeProxy.running(database.settings.host, database.settings.port) as running:
        yield running


@pytest.fixture
async def proxied(database: Database, proxy: BlackholeProxy) -> AsyncIterator[Database]:
    """The same database reached through the proxy, with short bounds."""
    db = Database(
        replace(
            database.settings,
            port=proxy.port,
            connect_timeout=1.0,
            statement_timeout=STATEMENT,
            transaction_timeout=TRANSACTION,
        )
    )
    try:
        yield db
    finally:
        await within(10, db.close())


async def rows(database: Database) -> dict[str, list[Any]]:
    """What is committed, read directly (not through the proxy)."""
    async with database.transaction("test") as cur:
        await cur.execute("SELECT id, port_id FROM multi_interface ORDER BY id")
        interfaces = [(r["id"], r["port_id"]) for r in await cur.fetchall()]
        await cur.execute("SELECT attached_node_name FROM node_table ORDER BY attached_node_name")
        nodes = [r["attached_node_name"] for r in await cur.fetchall()]
    return {"interfaces": interfaces, "nodes": nodes}


async def open_transactions(database: Database) -> list[dict[str, Any]]:
    """InnoDB transactions still open in this test's database, ours excepted (the server may be shared with
    other test sessions or benchmarks, whose transactions are none of this test's business)."""
    async with database.transaction("test") as cur:
        await cur.execute(
            "SELECT t.trx_mysql_thread_id, t.trx_state, t.trx_started FROM information_schema.INNODB_TRX t "
            "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
            "WHERE t.trx_mysql_thread_id <> CONNECTION_ID() AND p.DB = %s",
            (database.name,),
        )
        return list(await cur.fetchall())


@pytest.mark.parametrize(
    "marker",
    [
        pytest.param(b"INSERT INTO multi_interface", id="mid-transaction"),
        pytest.param(b"\x03COMMIT", id="the-commit"),  # COM_QUERY "COMMIT": the answer never comes
    ],
)
async def test_a_transaction_cut_off_by_a_black_hole_commits_nothing_and_the_retry_succeeds(
    database: Database, proxied: Database, proxy: BlackholeProxy, marker: bytes
) -> None:
    repo = Repository(proxied)
    await within(10, repo.apply("ns", "cfg", BEFORE))
    before = await rows(database)
    assert [port for _, port in before["interfaces"]] == ["port-1"]

    proxy.blackhole_on(marker)
    error = await failure_within(STATEMENT + 3, repo.apply("ns", "cfg", AFTER))
    assert proxy.holed_at is not None
    abandoned_after = time.monotonic() - proxy.holed_at
    assert isinstance(error, DatabaseTimeout) and isinstance(error, DatabaseUnavailable), repr(error)
    assert "DB_STATEMENT_TIMEOUT" in str(error) and proxied.address in str(error)
    assert STATEMENT - 0.1 <= abandoned_after < STATEMENT + 1.0, abandoned_after
    # The connection was discarded (the client let go of its socket), not put back in the pool.
    await asyncio.sleep(0.05)
    assert proxy.stalled == 0 and proxied.active == 0
    assert await rows(database) == before, "nothing of the cut-off transaction is visible"

    # The network heals, but the stalled session never hears of the client's disconnect: the server still holds
    # it, in its transaction, with its row locks. Retry the way the work queue does, with backoff.
    proxy.heal()
    healed = time.monotonic()
    attempts, delay = 0, 0.05
    while True:
        attempts += 1
        try:
            await within(TRANSACTION + 3, repo.apply("ns", "cfg", AFTER))
            break
        except DatabaseUnavailable:
            assert time.monotonic() - healed < 3 * TRANSACTION, "the retry never got through"
            await asyncio.sleep(delay)
            delay *= 2
    recovered_after = time.monotonic() - healed
    after = await rows(database)
    assert after["interfaces"][0] == before["interfaces"][0], "port-1's row kept its id"
    assert [port for _, port in after["interfaces"]] == ["port-1", "port-2"]
    assert after["nodes"] == ["test-vm-1", "test-vm-2"]
    # idle_transaction_timeout (= DB_TRANSACTION_TIMEOUT) ended the orphaned session and rolled it back.
    assert await open_transactions(database) == []
    print(
        f"abandoned {abandoned_after:.2f}s after the black hole; succeeded {recovered_after:.2f}s after healing "
        f"({attempts} attempts)"
    )


async def test_connecting_into_a_black_hole_is_bounded(proxied: Database, proxy: BlackholeProxy) -> None:
    """The proxy accepts (as a load balancer would) and then says nothing: no greeting ever comes."""
    proxy.blackhole()
    started = time.monotonic()
    error = await failure_within(5, proxied.ping())
    elapsed = time.monotonic() - started
    assert isinstance(error, DatabaseUnavailable), repr(error)
    # connect_timeout (1s) + DB_STATEMENT_TIMEOUT (1s) bound the connect and login
    assert elapsed < 1.0 + STATEMENT + 0.5, elapsed
    await asyncio.sleep(0.05)
    assert proxy.accepted >= 1 and proxy.stalled == 0 and proxied.active == 0
    proxy.heal()
    await within(5, proxied.ping())


async def test_a_freed_slot_goes_to_the_next_waiter_at_once(database: Database, proxy: BlackholeProxy) -> None:
    """Pool of one: a transaction stuck in the black hole holds the only connection. When it is abandoned, the
    caller waiting for a connection gets a fresh one at once, not at the end of its own deadline."""
    db = Database(
        replace(database.settings, port=proxy.port, pool_size=1, statement_timeout=1.0, transaction_timeout=6.0)
    )
    try:

        async def stuck() -> None:
            async with db.transaction("stuck") as cur:
                await cur.execute("SELECT 'the black hole starts here'")

        proxy.blackhole_on(b"the black hole starts here")
        first = asyncio.ensure_future(failure_within(5, stuck()))
        await within(3, _until(lambda: proxy.is_holed))
        proxy.heal()  # new connections go through; the stuck one stays stuck
        started = time.monotonic()
        await within(5, db.ping())
        assert isinstance(await first, DatabaseTimeout)
        assert time.monotonic() - started < 1.0 + 1.0, "the waiter sat out its own deadline"
    finally:
        await within(10, db.close())


async def test_the_server_bounds_statements_and_idle_transactions_too(database: Database) -> None:
    """A statement waiting for a row lock is abandoned by the client at DB_STATEMENT_TIMEOUT; the server, which
    would go on waiting for innodb_lock_wait_timeout (50s) with the client long gone, stops it as well."""
    db = Database(replace(database.settings, statement_timeout=1.0, transaction_timeout=3.0))
    holder = await connect_raw(database.settings, database=database.name)
    try:
        async with db.transaction("test") as cur:
            await cur.execute("SELECT @@max_statement_time AS statement, @@idle_transaction_timeout AS idle")
            assert await cur.fetchone() == {"statement": 1.0, "idle": 3}
        async with holder.cursor() as cur:
            await cur.execute("BEGIN")
            await cur.execute(
                "INSERT INTO node_table (attached_node_id, attached_node_name, status) VALUES ('n', 'locked', 'x')"
            )

        async def blocked() -> None:
            async with db.transaction("blocked") as cur:
                await cur.execute("UPDATE node_table SET status = 'mine' WHERE attached_node_name = 'locked'")

        started = time.monotonic()
        error = await failure_within(5, blocked())
        assert isinstance(error, DatabaseTimeout), repr(error)
        assert time.monotonic() - started < 1.5
        await asyncio.sleep(0.5)
        async with database.transaction("test") as cur:
            await cur.execute(
                "SELECT ID, STATE, INFO FROM information_schema.PROCESSLIST WHERE INFO LIKE %s",
                ("UPDATE node_table SET status = 'mine'%",),
            )
            assert await cur.fetchall() == (), "the server still runs the abandoned statement"
    finally:
        holder.close()
        await within(10, db.close())


async def test_a_transaction_is_bounded_as_a_whole(database: Database) -> None:
    """Each statement within its bound, the transaction not: abandoned at DB_TRANSACTION_TIMEOUT, uncommitted."""
    db = Database(replace(database.settings, statement_timeout=1.0, transaction_timeout=1.5))
    try:

        async def slow() -> None:
            async with db.transaction("slow") as cur:
                await cur.execute(
                    "INSERT INTO node_table (attached_node_id, attached_node_name, status) VALUES ('s', 'slow', 'x')"
                )
                for _ in range(5):
                    await cur.execute("SELECT SLEEP(0.4)")

        started = time.monotonic()
        error = await failure_within(5, slow())
        elapsed = time.monotonic() - started
        assert isinstance(error, DatabaseTimeout) and "DB_TRANSACTION_TIMEOUT" in str(error), repr(error)
        assert 1.4 <= elapsed < 2.0, elapsed
        assert db.active == 0
        assert (await rows(database))["nodes"] == []
    finally:
        await within(10, db.close())


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.01)
