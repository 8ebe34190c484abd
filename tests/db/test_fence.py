"""Fencing at the database (issue 11, item 6): a deposed leader's writes are refused, on a real MariaDB."""

from __future__ import annotations

import asyncio

import pytest

from multinic_ctrl.db import Database, Repository
from multinic_ctrl.db.fence import Fenced, check, claim
from tests.db.test_repository import desired, dump, port

pytestmark = pytest.mark.db


async def test_terms_increase_and_the_older_leader_is_refused(database: Database) -> None:
    old_term = await claim(database, "replica-a")
    old = Repository(database, fence=lambda: old_term)
    await old.apply("ns", "cfg", desired(port(1, 1)), spec_hash="a" * 64)

    new_term = await claim(database, "replica-b")
    assert new_term == old_term + 1
    new = Repository(database, fence=lambda: new_term)
    await new.apply("ns", "cfg", desired(port(1, 1), port(2, 2)), spec_hash="b" * 64)
    before = await dump(database)

    with pytest.raises(Fenced, match=f"replica-b, term {new_term}"):
        await old.apply("ns", "cfg", desired(port(1, 1)), spec_hash="c" * 64)  # the stale view
    with pytest.raises(Fenced):
        await old.remove("ns", "cfg")
    assert await dump(database) == before, "nothing of the deposed leader's was committed"


async def test_a_refusing_fence_provider_stops_the_write_before_any_statement(database: Database) -> None:
    def lease_too_old() -> int:
        raise Fenced("the lease has less than 5s left")

    repo = Repository(database, fence=lease_too_old)
    with pytest.raises(Fenced, match="lease"):
        await repo.apply("ns", "cfg", desired(port(1, 1)), spec_hash="a" * 64)
    assert (await dump(database))["multi_interface"] == []


async def test_a_claim_waits_for_the_old_leaders_in_flight_transaction(database: Database) -> None:
    """Order: what the old leader is committing lands before the new leader's term begins, never after."""
    term = await claim(database, "replica-a")
    async with database.transaction("old-leader") as cur:
        await check(cur, term)  # holds the shared lock, as an in-flight write does
        claiming = asyncio.create_task(claim(database, "replica-b"))
        await asyncio.sleep(0.5)
        assert not claiming.done(), "the new term must wait for the in-flight transaction"
    assert await asyncio.wait_for(claiming, 10) == term + 1


async def test_one_leaders_transactions_do_not_serialise_on_the_fence(database: Database) -> None:
    term = await claim(database, "replica-a")
    async with database.transaction("first") as first, database.transaction("second") as second:
        await check(first, term)
        await asyncio.wait_for(check(second, term), 2)  # shared locks: no waiting
