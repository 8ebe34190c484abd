"""Fencing: a deposed leader's in-flight write is refused by the database itself.

Invariants:
- Leader election alone cannot stop a replica that lost its Lease without knowing it (a paused process, a
  blocked loop, a slow renew) from committing an older OpenStack view after the new leader's. The database is
  the one place both write to, so it decides.
- Each leadership term is numbered by the database: on winning the Lease, a replica increments
  `leader_fence.generation` and keeps the value as its term (`claim`). The Lease's own counter is not used: it
  restarts at 0 when the Lease object is deleted, which would fence the rightful leader forever.
- Every write transaction of a leader first reads the generation under a shared lock (`check`): a newer
  generation means a newer leader has claimed the database, and the transaction is refused (`Fenced`) and
  rolled back. Shared locks do not block each other, so one leader's concurrent transactions never serialise
  on the fence; the claim's exclusive update waits for the old leader's in-flight transactions to finish
  (they commit before the new leader writes anything, in order) and every later one of theirs is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from multinic_ctrl.db.pool import Database

FENCE_TABLE = """CREATE TABLE IF NOT EXISTS leader_fence (
    id TINYINT NOT NULL PRIMARY KEY,
    generation BIGINT NOT NULL,
    holder VARCHAR(253) NULL,
    claimed_at DATETIME(6) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"""
FENCE_ROW = "INSERT IGNORE INTO leader_fence (id, generation) VALUES (1, 0)"

FenceProvider = Callable[[], int]
"""Returns the caller's term when it may write now; raises `Fenced` when it may not (e.g. lease too old)."""


class Fenced(Exception):
    """This replica is no longer (or not safely) the leader: the write is refused and nothing is committed."""


async def claim(database: Database, holder: str) -> int:
    """Start a new term for `holder` (just won the Lease): returns the term its writes must carry."""
    async with database.transaction("fence_claim") as cur:
        await cur.execute(
            "UPDATE leader_fence SET generation = generation + 1, holder = %s, claimed_at = UTC_TIMESTAMP(6) "
            "WHERE id = 1",
            (holder,),
        )
        await cur.execute("SELECT generation FROM leader_fence WHERE id = 1")
        row = await cur.fetchone()
    if row is None:
        raise RuntimeError("leader_fence has no row: run the migrations")
    return int(row["generation"])


async def check(cur: Any, term: int) -> None:
    """In a write transaction: refuse it unless `term` is still the newest claim (shared lock to commit)."""
    await cur.execute("SELECT generation, holder FROM leader_fence WHERE id = 1 LOCK IN SHARE MODE")
    row = await cur.fetchone()
    current = int(row["generation"]) if row else 0
    if current != term:
        raise Fenced(
            f"a newer leader ({row['holder'] if row else 'unknown'}, term {current}) has claimed the database; "
            f"this replica's term {term} is over"
        )
