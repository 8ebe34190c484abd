"""The repository: applies one CR's desired rows as a diff, in one transaction.

Why a diff and not delete-and-reinsert (what the original did): the node agent treats a row's `id` and
`netplan_success` as its memory of what it configured. Rewriting rows makes every node re-apply netplan on
every reconcile. So: insert what is new, update what changed (resetting `netplan_success` only when the agent
must re-apply), delete what is gone, and leave everything else byte-for-byte alone.

Concurrency: two CRs may share a subnet or a node, and one CR's rows are written by one worker at a time (the
work queue's exclusivity, and fencing across replicas). What a transaction reads decides what it writes, so:

* rows it may change are locked before the diff that changes them is final: the CR's own interface rows when
  the diff updates or deletes any, and the rows of other CRs that hold a port it wants (so a port its owner is
  letting go of in a concurrent transaction is seen free once that commits, not reported as a conflict);
* a shared subnet or node row is locked only when it must be written (new, changed, or marked deleted). Most
  transactions only reference it; the foreign keys take a shared lock for that, so CRs on one subnet or node
  commit side by side instead of queueing behind one exclusive `FOR UPDATE` on the shared row;
* locks are taken by primary key on rows that exist, never by a search that can miss: under REPEATABLE READ a
  locking read that finds nothing locks the gap where the row would go, and new configs, nodes and ports of a
  backlog all land in the same gap (names in order, the end of the index), so every such transaction deadlocked
  with the next one. Rows that do not exist yet are simply inserted; the unique keys settle a race (duplicate
  key), as do InnoDB's deadlock detector and lock wait timeout in what remains: the whole transaction is
  retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pymysql
import structlog

from multinic_ctrl.db import fence
from multinic_ctrl.db.fence import FenceProvider
from multinic_ctrl.db.models import (
    ApplyResult,
    DesiredState,
    InterfaceRow,
    NodeRow,
    RowDiff,
    StoredInterface,
    SubnetRow,
    diff_interfaces,
)
from multinic_ctrl.db.pool import Database

log = structlog.get_logger(__name__)

Cursor = Any  # aiomysql.DictCursor (untyped library)

_RETRYABLE_ERRNOS = {1205, 1213, 1062}  # lock wait timeout, deadlock, duplicate key (insert race)
_ATTEMPTS = 4

AGENT_QUERY = (
    "SELECT mi.id, mi.macaddress, mi.attached_node_name, mi.netplan_success, mi.address, mi.mtu, ms.cidr "
    "FROM multi_interface mi LEFT JOIN multi_subnet ms ON mi.subnet_id = ms.subnet_id "
    "WHERE mi.attached_node_name = %s"
)
"""The node agent's query, verbatim from MISSION.md (its `?` placeholder written as aiomysql's `%s`)."""


@dataclass(frozen=True)
class CrState:
    spec_hash: str
    last_sync_at: dt.datetime


@dataclass(frozen=True)
class KeepRows:
    """Current interface rows `apply` leaves exactly as they are although `desired` does not list them.

    For VMs OpenStack could not vouch for ("present, state unknown"): deleting their rows would make the node
    agent tear the NICs down. A row is kept when its node name is in `node_names` and, when `node_ids` is
    given, its node (server) ID is one of those. Only rows on one of the desired subnets are kept (a subnet the
    spec no longer names is the user's decision), and a port the desired rows list is always theirs.
    """

    node_names: frozenset[str] = frozenset()
    node_ids: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return bool(self.node_names) and self.node_ids != frozenset()

    def keeps(self, row: InterfaceRow) -> bool:
        return row.node_name in self.node_names and (self.node_ids is None or row.node_id in self.node_ids)


def _with_kept(current: Sequence[StoredInterface], desired: DesiredState, keep: KeepRows | None) -> list[InterfaceRow]:
    """Desired interfaces plus the current rows `keep` protects (unchanged, so the diff leaves them alone)."""
    wanted = list(desired.interfaces)
    if not keep:
        return wanted
    ports = {row.port_id for row in wanted}
    subnets = {s.subnet_id for s in desired.subnets}
    wanted += [
        s.row for s in current if keep.keeps(s.row) and s.row.port_id not in ports and s.row.subnet_id in subnets
    ]
    return wanted


def _owners(foreign: Mapping[str, StoredInterface]) -> dict[str, str]:
    return {port: f"{s.cr_namespace}/{s.cr_name}" for port, s in foreign.items()}


def _subnet_matches(row: Mapping[str, Any] | None, subnet: SubnetRow) -> bool:
    """The stored subnet row already says what `subnet` says (and is not marked deleted)."""
    return row is not None and (
        row["subnet_name"],
        row["cidr"],
        row["network_id"],
        row["status"],
        row["deleted_at"],
    ) == (subnet.subnet_name, subnet.cidr, subnet.network_id, subnet.status, None)


def _node_matches(row: Mapping[str, Any] | None, node: NodeRow) -> bool:
    """The stored node row (found by both its ID and its name) already says what `node` says."""
    return row is not None and (row["status"], row["deleted_at"]) == (node.status, None)


def _placeholders(values: Sequence[object]) -> str:
    return ", ".join(["%s"] * len(values))


_INSERT_CHUNK = 500
"""Rows per multi-row INSERT: a few hundred bytes each, so a statement stays far below `max_allowed_packet`."""


async def _insert_rows(cur: Cursor, head: str, row_placeholders: str, rows: Sequence[Sequence[object]]) -> None:
    """`head` + one `row_placeholders` group per row, as few statements as `_INSERT_CHUNK` allows: one round
    trip instead of one per row (values are still bound by the driver, never formatted into the text)."""
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        await cur.execute(head + ", ".join([row_placeholders] * len(chunk)), [v for row in chunk for v in row])


def _stored(row: dict[str, Any]) -> StoredInterface:
    return StoredInterface(
        id=int(row["id"]),
        row=InterfaceRow(
            port_id=row["port_id"],
            subnet_id=row["subnet_id"],
            mac=row["macaddress"],
            address=row["address"],
            mtu=row["mtu"],
            node_id=row["attached_node_id"],
            node_name=row["attached_node_name"],
            status=row["status"],
        ),
        netplan_success=int(row["netplan_success"]),
        cr_namespace=row["cr_namespace"],
        cr_name=row["cr_name"],
    )


class Repository:
    def __init__(self, database: Database, *, fence: FenceProvider | None = None) -> None:
        self.db = database
        self._fence = fence  # None: no leader election, nothing to fence

    # ----------------------------------------------------------------- reads
    async def config_keys(self) -> list[tuple[str, str]]:
        """Every config that has rows or state, as (namespace, name): what the orphan collector checks."""
        async with self.db.transaction("list_configs") as cur:
            await cur.execute(
                "SELECT cr_namespace, cr_name FROM multi_interface UNION SELECT cr_namespace, cr_name FROM cr_state"
            )
            return sorted((str(r["cr_namespace"]), str(r["cr_name"])) for r in await cur.fetchall())

    async def interfaces_of(self, namespace: str, name: str) -> list[StoredInterface]:
        async with self.db.transaction("list_interfaces") as cur:
            await cur.execute(
                "SELECT * FROM multi_interface WHERE cr_namespace = %s AND cr_name = %s ORDER BY port_id",
                (namespace, name),
            )
            return [_stored(r) for r in await cur.fetchall()]

    async def state_of(self, namespace: str, name: str) -> CrState | None:
        async with self.db.transaction("get_state") as cur:
            await cur.execute(
                "SELECT spec_hash, last_sync_at FROM cr_state WHERE cr_namespace = %s AND cr_name = %s",
                (namespace, name),
            )
            row = await cur.fetchone()
        return None if row is None else CrState(row["spec_hash"], row["last_sync_at"].replace(tzinfo=dt.UTC))

    async def states(self) -> dict[tuple[str, str], CrState]:
        """Every config's stored state, keyed (namespace, name): one read instead of one per config when a
        controller starts on an existing cluster (see `OpenstackConfigReconciler.prime`)."""
        async with self.db.transaction("list_states") as cur:
            await cur.execute("SELECT cr_namespace, cr_name, spec_hash, last_sync_at FROM cr_state")
            return {
                (str(r["cr_namespace"]), str(r["cr_name"])): CrState(
                    r["spec_hash"], r["last_sync_at"].replace(tzinfo=dt.UTC)
                )
                for r in await cur.fetchall()
            }

    async def agent_view(self, node_name: str) -> list[dict[str, Any]]:
        """What the node agent on `node_name` sees (its exact query)."""
        async with self.db.transaction("agent_view") as cur:
            await cur.execute(AGENT_QUERY + " ORDER BY mi.id", (node_name,))
            return list(await cur.fetchall())

    async def plan(self, namespace: str, name: str, desired: DesiredState, *, keep: KeepRows | None = None) -> RowDiff:
        """The diff `apply` would make now, without writing anything."""
        async with self.db.transaction("plan") as cur:
            current, foreign = await self._interface_rows(cur, namespace, name, desired)
        return diff_interfaces((s.row for s in current), _with_kept(current, desired, keep), _owners(foreign))

    # ---------------------------------------------------------------- writes
    async def apply(
        self,
        namespace: str,
        name: str,
        desired: DesiredState,
        *,
        keep: KeepRows | None = None,
        spec_hash: str | None = None,
        synced_at: dt.datetime | None = None,
    ) -> ApplyResult:
        """Make the CR's rows equal `desired`, except rows `keep` protects (they stay untouched and are
        reported as unchanged); store `spec_hash` in the same transaction (only on success).

        `synced_at` is stored as naive UTC: the server's time zone (NOW()) must not shift schedules.
        """
        moment = (synced_at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
        return await self._retrying(
            "apply", lambda cur: self._apply(cur, namespace, name, desired, spec_hash, synced_at=moment, keep=keep)
        )

    async def remove(self, namespace: str, name: str) -> int:
        """Delete the CR's interface rows and state (the CR is being deleted); returns rows deleted."""
        result = await self._retrying(
            "remove", lambda cur: self._apply(cur, namespace, name, DesiredState(), None, forget=True)
        )
        return len(result.diff.removed)

    async def _retrying(self, operation: str, body: Any) -> ApplyResult:
        if self._fence is not None:
            self._fence()  # before taking a connection: a replica past its lease margin does not even start
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self.db.transaction(operation) as cur:
                    result: ApplyResult = await body(cur)
                return result
            except (pymysql.err.OperationalError, pymysql.err.IntegrityError) as exc:
                code = exc.args[0] if exc.args else None
                if code not in _RETRYABLE_ERRNOS or attempt == _ATTEMPTS:
                    raise
                log.info("Retrying database transaction after a conflict", operation=operation, errno=code)
                await asyncio.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    async def _apply(
        self,
        cur: Cursor,
        namespace: str,
        name: str,
        desired: DesiredState,
        spec_hash: str | None,
        *,
        forget: bool = False,
        synced_at: dt.datetime | None = None,
        keep: KeepRows | None = None,
    ) -> ApplyResult:
        if self._fence is not None:
            await fence.check(cur, self._fence())  # a newer term in the database: nothing is read or written
        current, foreign = await self._interface_rows(cur, namespace, name, desired)
        # Kept rows are still referenced afterwards, so the sweep below leaves their node and subnet alone.
        diff = diff_interfaces((s.row for s in current), _with_kept(current, desired, keep), _owners(foreign))
        if diff.removed or diff.changed or foreign:
            # Rows this transaction will change, or another CR's port it wants: lock them (by id) and decide on
            # their latest committed state. A port whose owner lets it go in a concurrent transaction is free
            # once that commits; a port taken meanwhile is a duplicate key on insert, and a retry.
            lock = [s.id for s in current] + [s.id for s in foreign.values()]
            current, foreign = await self._interface_rows(cur, namespace, name, desired, lock=lock)
            diff = diff_interfaces((s.row for s in current), _with_kept(current, desired, keep), _owners(foreign))
        ids = {s.row.port_id: s.id for s in current}

        if diff.removed:
            removed_ids = [ids[r.port_id] for r in diff.removed]
            await cur.execute(f"DELETE FROM multi_interface WHERE id IN ({_placeholders(removed_ids)})", removed_ids)
        subnets_written = await self._upsert_subnets(cur, desired.subnets)
        nodes_written = await self._upsert_nodes(cur, desired.nodes)
        await _insert_rows(
            cur,
            "INSERT INTO multi_interface (port_id, subnet_id, macaddress, address, mtu, attached_node_id, "
            "attached_node_name, cr_namespace, cr_name, status, netplan_success) VALUES ",
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0)",
            [
                (
                    row.port_id,
                    row.subnet_id,
                    row.mac,
                    row.address,
                    row.mtu,
                    row.node_id,
                    row.node_name,
                    namespace,
                    name,
                    row.status,
                )
                for row in diff.added
            ],
        )
        for change in diff.changed:
            new = change.new
            await cur.execute(
                "UPDATE multi_interface SET subnet_id = %s, macaddress = %s, address = %s, mtu = %s, "
                "attached_node_id = %s, attached_node_name = %s, status = %s, modified_at = NOW(6)"
                + (", netplan_success = 0" if change.resets_netplan else "")
                + " WHERE id = %s",
                (
                    new.subnet_id,
                    new.mac,
                    new.address,
                    new.mtu,
                    new.node_id,
                    new.node_name,
                    new.status,
                    ids[new.port_id],
                ),
            )
        previously = [s.row for s in current]
        swept = await self._sweep_unreferenced(
            cur,
            subnet_ids={r.subnet_id for r in previously} - {s.subnet_id for s in desired.subnets},
            node_ids={r.node_id for r in previously} - {n.node_id for n in desired.nodes},
        )
        if forget:
            await cur.execute("DELETE FROM cr_state WHERE cr_namespace = %s AND cr_name = %s", (namespace, name))
        elif spec_hash is not None:
            await cur.execute(
                "INSERT INTO cr_state (cr_namespace, cr_name, spec_hash, last_sync_at) VALUES (%s, %s, %s, %s) "
                "ON DUPLICATE KEY UPDATE spec_hash = VALUES(spec_hash), last_sync_at = VALUES(last_sync_at), "
                "modified_at = NOW(6)",
                (namespace, name, spec_hash, synced_at),
            )
        return ApplyResult(diff=diff, subnets_written=subnets_written, nodes_written=nodes_written, swept=swept)

    async def _interface_rows(
        self, cur: Cursor, namespace: str, name: str, desired: DesiredState, *, lock: Sequence[int] = ()
    ) -> tuple[list[StoredInterface], dict[str, StoredInterface]]:
        """The CR's interface rows, and the rows of other CRs holding a port `desired` lists (by port ID).

        Without `lock`: one consistent (non-locking) read. With `lock`: those row IDs read again, locked, in their
        latest committed state (waiting for a transaction that holds them); rows gone meanwhile are not returned.
        """
        ports = [i.port_id for i in desired.interfaces]
        if lock:
            await cur.execute(
                f"SELECT * FROM multi_interface WHERE id IN ({_placeholders(lock)}) ORDER BY id FOR UPDATE", list(lock)
            )
        else:
            await cur.execute(
                "SELECT * FROM multi_interface WHERE (cr_namespace = %s AND cr_name = %s)"
                + (f" OR port_id IN ({_placeholders(ports)})" if ports else "")
                + " ORDER BY id",
                [namespace, name, *ports],
            )
        current: list[StoredInterface] = []
        foreign: dict[str, StoredInterface] = {}
        wanted = set(ports)
        for stored in (_stored(r) for r in await cur.fetchall()):
            if (stored.cr_namespace, stored.cr_name) == (namespace, name):
                current.append(stored)
            elif stored.row.port_id in wanted:
                foreign[stored.row.port_id] = stored
        return current, foreign

    async def _upsert_subnets(self, cur: Cursor, subnets: Iterable[SubnetRow]) -> int:
        wanted = {s.subnet_id: s for s in subnets}
        if not wanted:
            return 0
        keys = sorted(wanted)
        query = f"SELECT * FROM multi_subnet WHERE subnet_id IN ({_placeholders(keys)})"
        await cur.execute(query, keys)
        existing: dict[str, Any] = {r["subnet_id"]: r for r in await cur.fetchall()}
        if all(_subnet_matches(existing.get(key), wanted[key]) for key in keys):
            return 0  # only referenced: the foreign key's shared lock is all this transaction needs
        present = [key for key in keys if key in existing]
        if present:  # about to write: decide on the latest committed rows, locked (a missing one is inserted)
            await cur.execute(
                f"SELECT * FROM multi_subnet WHERE subnet_id IN ({_placeholders(present)}) FOR UPDATE", present
            )
            existing = {r["subnet_id"]: r for r in await cur.fetchall()}
        written = 0
        for key in keys:
            s = wanted[key]
            row = existing.get(key)
            if row is None:
                await cur.execute(
                    "INSERT INTO multi_subnet (subnet_id, subnet_name, cidr, network_id, status) "
                    "VALUES (%s, %s, %s, %s, %s)",
                    (s.subnet_id, s.subnet_name, s.cidr, s.network_id, s.status),
                )
                written += 1
                continue
            if _subnet_matches(row, s):
                continue
            await cur.execute(
                "UPDATE multi_subnet SET subnet_name = %s, cidr = %s, network_id = %s, status = %s, "
                "modified_at = NOW(6), deleted_at = NULL WHERE subnet_id = %s",
                (s.subnet_name, s.cidr, s.network_id, s.status, key),
            )
            written += 1
            if row["cidr"] != s.cidr:
                # The agent writes the prefix length into netplan: every NIC on this subnet must re-apply.
                await cur.execute(
                    "UPDATE multi_interface SET netplan_success = 0, modified_at = NOW(6) WHERE subnet_id = %s",
                    (key,),
                )
        return written

    async def _upsert_nodes(self, cur: Cursor, nodes: Iterable[NodeRow]) -> int:
        wanted = sorted(nodes)
        if not wanted:
            return 0
        ids = [n.node_id for n in wanted]
        names = [n.node_name for n in wanted]
        await cur.execute(
            f"SELECT * FROM node_table WHERE attached_node_id IN ({_placeholders(ids)}) "
            f"OR attached_node_name IN ({_placeholders(names)}) ORDER BY id",
            [*ids, *names],
        )
        rows: list[dict[str, Any]] = list(await cur.fetchall())
        by_node = {(r["attached_node_id"], r["attached_node_name"]): r for r in rows}
        if all(_node_matches(by_node.get((n.node_id, n.node_name)), n) for n in wanted):
            return 0  # only referenced: the foreign keys' shared locks are all this transaction needs
        if rows:  # about to write: decide on the latest committed rows, locked (a missing one is inserted)
            row_ids = [r["id"] for r in rows]
            await cur.execute(
                f"SELECT * FROM node_table WHERE id IN ({_placeholders(row_ids)}) ORDER BY id FOR UPDATE", row_ids
            )
            rows = [r for r in await cur.fetchall() if r["attached_node_id"] in ids or r["attached_node_name"] in names]
        written = 0
        # Nodes the table has never seen, under an ID and a name no other wanted node shares, do not depend on
        # anything the loop below writes: they are inserted together at the end, in one statement (a backlog
        # of new configs is mostly such nodes, and each round trip costs more than the row).
        id_count = Counter(n.node_id for n in wanted)
        name_count = Counter(n.node_name for n in wanted)
        new_nodes: list[NodeRow] = []
        for node in wanted:
            by_id = next((r for r in rows if r["attached_node_id"] == node.node_id), None)
            by_name = next((r for r in rows if r["attached_node_name"] == node.node_name), None)
            if by_id is None and by_name is None and id_count[node.node_id] == name_count[node.node_name] == 1:
                new_nodes.append(node)
                continue
            if by_id is not None and by_id is by_name:
                if (by_id["status"], by_id["deleted_at"]) != (node.status, None):
                    await cur.execute(
                        "UPDATE node_table SET status = %s, deleted_at = NULL, modified_at = NOW(6) WHERE id = %s",
                        (node.status, by_id["id"]),
                    )
                    written += 1
                continue
            if by_name is not None and by_id is not None:
                # The name now belongs to another server (renamed into a re-used name): free it first.
                await self._retire_node_name(cur, by_name)
                by_name = None
            if by_id is None and by_name is None:
                await cur.execute(
                    "INSERT INTO node_table (attached_node_id, attached_node_name, status) VALUES (%s, %s, %s)",
                    (node.node_id, node.node_name, node.status),
                )
            elif by_name is not None:
                # Same name, new server UUID: the VM was re-created. Interface rows follow by cascade.
                log.info(
                    "Node re-created under the same name",
                    node=node.node_name,
                    old_id=by_name["attached_node_id"],
                    new_id=node.node_id,
                )
                await cur.execute(
                    "UPDATE node_table SET attached_node_id = %s, status = %s, deleted_at = NULL, "
                    "modified_at = NOW(6) WHERE id = %s",
                    (node.node_id, node.status, by_name["id"]),
                )
            else:
                assert by_id is not None
                # Same server, new name: the agent on the new hostname has applied nothing yet.
                log.info(
                    "Node renamed",
                    node_id=node.node_id,
                    old_name=by_id["attached_node_name"],
                    new_name=node.node_name,
                )
                await cur.execute(
                    "UPDATE node_table SET attached_node_name = %s, status = %s, deleted_at = NULL, "
                    "modified_at = NOW(6) WHERE id = %s",
                    (node.node_name, node.status, by_id["id"]),
                )
                await cur.execute(
                    "UPDATE multi_interface SET netplan_success = 0, modified_at = NOW(6) WHERE attached_node_id = %s",
                    (node.node_id,),
                )
            written += 1
            await cur.execute(
                "SELECT * FROM node_table WHERE attached_node_id = %s OR attached_node_name = %s",
                (node.node_id, node.node_name),
            )
            fresh = list(await cur.fetchall())
            rows = [r for r in rows if r["id"] not in {f["id"] for f in fresh}] + fresh
        await _insert_rows(
            cur,
            "INSERT INTO node_table (attached_node_id, attached_node_name, status) VALUES ",
            "(%s, %s, %s)",
            [(n.node_id, n.node_name, n.status) for n in new_nodes],
        )
        return written + len(new_nodes)

    async def _retire_node_name(self, cur: Cursor, row: dict[str, Any]) -> None:
        await cur.execute(
            "SELECT COUNT(*) AS n FROM multi_interface WHERE attached_node_id = %s",
            (row["attached_node_id"],),
        )
        counted = await cur.fetchone()
        referenced = counted["n"] if counted else 0
        if referenced:
            # Rows of another CR still point at the old server; park them under a name no host has, so
            # they leave that hostname's agent view until their own CR reconciles.
            await cur.execute(
                "UPDATE node_table SET attached_node_name = %s, deleted_at = NOW(6), modified_at = NOW(6) "
                "WHERE id = %s",
                (f"~retired~{row['attached_node_id']}", row["id"]),
            )
        else:
            await cur.execute("DELETE FROM node_table WHERE id = %s", (row["id"],))

    async def _sweep_unreferenced(self, cur: Cursor, *, subnet_ids: set[str], node_ids: set[str]) -> tuple[str, ...]:
        """Mark subnets and nodes this CR stopped using as deleted, unless another row still uses them."""
        swept: list[str] = []
        for table, column, keys in (
            ("multi_subnet", "subnet_id", sorted(subnet_ids)),
            ("node_table", "attached_node_id", sorted(node_ids)),
        ):
            if not keys:
                continue
            await cur.execute(
                f"SELECT {column} AS k FROM {table} t WHERE {column} IN ({_placeholders(keys)}) "
                f"AND deleted_at IS NULL AND NOT EXISTS "
                f"(SELECT 1 FROM multi_interface mi WHERE mi.{column} = t.{column})",
                keys,
            )
            gone = [r["k"] for r in await cur.fetchall()]
            if gone:
                await cur.execute(
                    f"UPDATE {table} SET deleted_at = NOW(6), modified_at = NOW(6) "
                    f"WHERE {column} IN ({_placeholders(gone)})",
                    gone,
                )
                swept.extend(f"{table}:{k}" for k in gone)
        return tuple(swept)
