"""The repository against a real MariaDB, checked through the node agent's own query (MISSION.md)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from multinic_ctrl.db import Database, DesiredState, InterfaceRow, NodeRow, Repository, SubnetRow
from multinic_ctrl.db.repository import AGENT_QUERY

pytestmark = pytest.mark.db

SUBNET = SubnetRow("sub-1", "k8s-subnet", "192.168.100.0/24", "net-1")
OTHER_SUBNET = SubnetRow("sub-2", "other-subnet", "10.10.0.0/24", "net-2")
VM = {i: NodeRow(f"uuid-{i}", f"test-vm-{i}") for i in range(1, 5)}


def port(
    i: int,
    node: int,
    *,
    subnet: SubnetRow = SUBNET,
    mac: str | None = None,
    ip: str | None = None,
    mtu: int = 1450,
) -> InterfaceRow:
    return InterfaceRow(
        port_id=f"port-{i}",
        subnet_id=subnet.subnet_id,
        mac=mac or f"FA:16:3E:00:00:{i:02X}",
        address=ip or f"192.168.100.{10 + i}",
        mtu=mtu,
        node_id=VM[node].node_id,
        node_name=VM[node].node_name,
    )


def desired(*ports: InterfaceRow, subnets: tuple[SubnetRow, ...] = (SUBNET,)) -> DesiredState:
    node_ids = {p.node_id for p in ports}
    return DesiredState(subnets=subnets, nodes=tuple(n for n in VM.values() if n.node_id in node_ids), interfaces=ports)


async def agent_query(db: Database, node: str, netplan: int | None = None) -> list[dict[str, Any]]:
    """The agent's query, verbatim, plus its optional netplan_success filter."""
    async with db.transaction("test") as cur:
        sql = AGENT_QUERY.replace("%s", "%s")
        args: list[Any] = [node]
        if netplan is not None:
            sql += " AND mi.netplan_success = %s"
            args.append(netplan)
        await cur.execute(sql, args)
        return sorted(await cur.fetchall(), key=lambda r: r["id"])


async def dump(db: Database) -> dict[str, list[dict[str, Any]]]:
    out = {}
    async with db.transaction("test") as cur:
        for table in ("multi_subnet", "node_table", "multi_interface", "cr_state"):
            await cur.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
            out[table] = list(await cur.fetchall())
    return out


async def agent_sets_success(db: Database, row_id: int) -> None:
    """The agent's only write, verbatim."""
    async with db.transaction("test") as cur:
        await cur.execute("UPDATE multi_interface SET netplan_success=%s, modified_at=NOW() WHERE id=%s", (1, row_id))


async def test_agent_query_sees_rows_per_node(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "cfg", desired(port(1, 1), port(2, 2), port(3, 2, mac="AA:BB:CC:DD:EE:0F")))
    vm1 = await agent_query(database, "test-vm-1")
    assert [(r["macaddress"], r["address"], r["mtu"], r["cidr"], r["netplan_success"]) for r in vm1] == [
        ("fa:16:3e:00:00:01", "192.168.100.11", 1450, "192.168.100.0/24", 0)
    ]
    vm2 = await agent_query(database, "test-vm-2")
    assert [r["macaddress"] for r in vm2] == ["fa:16:3e:00:00:02", "aa:bb:cc:dd:ee:0f"]
    assert all(r["attached_node_name"] == "test-vm-2" for r in vm2)
    assert await agent_query(database, "test-vm-3") == []
    assert await agent_query(database, "test-vm-2", netplan=0) == vm2


async def test_identical_apply_changes_nothing(repo: Repository, database: Database) -> None:
    state = desired(port(1, 1), port(2, 2))
    await repo.apply("ns", "cfg", state, spec_hash="a" * 64)
    (row,) = await agent_query(database, "test-vm-1")
    await agent_sets_success(database, row["id"])
    before = await dump(database)
    result = await repo.apply("ns", "cfg", state)
    assert result.diff.is_empty and result.subnets_written == 0 and result.nodes_written == 0
    assert await dump(database) == before


async def test_changed_address_touches_only_that_row(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "cfg", desired(port(1, 1), port(2, 1)))
    for row in await agent_query(database, "test-vm-1"):
        await agent_sets_success(database, row["id"])
    before = {r["id"]: r for r in (await dump(database))["multi_interface"]}

    result = await repo.apply("ns", "cfg", desired(port(1, 1), port(2, 1, ip="192.168.100.99")))

    assert [c.new.port_id for c in result.diff.changed] == ["port-2"]
    after = {r["id"]: r for r in (await dump(database))["multi_interface"]}
    assert after.keys() == before.keys()
    unchanged_id = next(i for i, r in before.items() if r["port_id"] == "port-1")
    changed_id = next(i for i, r in before.items() if r["port_id"] == "port-2")
    assert after[unchanged_id] == before[unchanged_id]
    assert after[changed_id]["address"] == "192.168.100.99"
    assert after[changed_id]["netplan_success"] == 0
    assert after[changed_id]["modified_at"] > before[changed_id]["modified_at"]


async def test_status_only_change_keeps_netplan_success(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "cfg", desired(port(1, 1)))
    (row,) = await agent_query(database, "test-vm-1")
    await agent_sets_success(database, row["id"])
    await repo.apply("ns", "cfg", desired(replace(port(1, 1), status="down")))
    (after,) = await agent_query(database, "test-vm-1")
    assert after["id"] == row["id"] and after["netplan_success"] == 1


@pytest.mark.parametrize("change", ["mac", "mtu"])
async def test_configured_fields_reset_netplan(repo: Repository, database: Database, change: str) -> None:
    await repo.apply("ns", "cfg", desired(port(1, 1)))
    (row,) = await agent_query(database, "test-vm-1")
    await agent_sets_success(database, row["id"])
    new = port(1, 1, mac="fa:16:3e:ff:ff:ff") if change == "mac" else port(1, 1, mtu=9000)
    await repo.apply("ns", "cfg", desired(new))
    (after,) = await agent_query(database, "test-vm-1")
    assert after["id"] == row["id"] and after["netplan_success"] == 0


async def test_cidr_change_resets_every_interface_on_subnet(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "a", desired(port(1, 1)))
    await repo.apply("ns", "b", desired(port(2, 2)))
    for node in ("test-vm-1", "test-vm-2"):
        for row in await agent_query(database, node):
            await agent_sets_success(database, row["id"])
    wider = replace(SUBNET, cidr="192.168.0.0/16")
    await repo.apply("ns", "a", desired(port(1, 1), subnets=(wider,)))
    for node in ("test-vm-1", "test-vm-2"):
        (row,) = await agent_query(database, node)
        assert row["cidr"] == "192.168.0.0/16" and row["netplan_success"] == 0


async def test_removed_vm_vanishes_from_agent_query(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "cfg", desired(port(1, 1), port(2, 2)))
    result = await repo.apply("ns", "cfg", desired(port(1, 1)))
    assert [r.port_id for r in result.diff.removed] == ["port-2"]
    assert await agent_query(database, "test-vm-2") == []
    assert len(await agent_query(database, "test-vm-1")) == 1
    nodes = {r["attached_node_name"]: r for r in (await dump(database))["node_table"]}
    assert nodes["test-vm-2"]["deleted_at"] is not None
    assert nodes["test-vm-1"]["deleted_at"] is None
    # It comes back: the node row is revived, not duplicated.
    await repo.apply("ns", "cfg", desired(port(1, 1), port(2, 2)))
    nodes = {r["attached_node_name"]: r for r in (await dump(database))["node_table"]}
    assert nodes["test-vm-2"]["deleted_at"] is None and len(nodes) == 2


async def test_recreated_vm_same_name_new_uuid(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "cfg", desired(port(1, 1)))
    # Nova deletes the VM (and its port); a new server with the same name gets a new port.
    reborn = NodeRow("uuid-1-reborn", "test-vm-1")
    new_port = replace(port(5, 1), node_id=reborn.node_id)
    result = await repo.apply("ns", "cfg", DesiredState((SUBNET,), (reborn,), (new_port,)))
    assert [r.port_id for r in result.diff.removed] == ["port-1"]
    (row,) = await agent_query(database, "test-vm-1")
    assert row["macaddress"] == "fa:16:3e:00:00:05"
    nodes = (await dump(database))["node_table"]
    assert [(n["attached_node_id"], n["attached_node_name"]) for n in nodes] == [("uuid-1-reborn", "test-vm-1")]


async def test_recreated_vm_while_other_cr_still_references_old_uuid(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "a", desired(port(1, 1)))
    await repo.apply("ns", "b", desired(port(2, 1, subnet=OTHER_SUBNET, ip="10.10.0.5"), subnets=(OTHER_SUBNET,)))
    reborn = NodeRow("uuid-1-reborn", "test-vm-1")
    await repo.apply("ns", "a", DesiredState((SUBNET,), (reborn,), (replace(port(5, 1), node_id=reborn.node_id),)))
    # CR b's row follows the node row by cascade; foreign keys hold.
    rows = (await dump(database))["multi_interface"]
    assert {r["port_id"]: r["attached_node_id"] for r in rows} == {
        "port-2": "uuid-1-reborn",
        "port-5": "uuid-1-reborn",
    }


async def test_renamed_vm_moves_rows_and_resets(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "cfg", desired(port(1, 1)))
    (row,) = await agent_query(database, "test-vm-1")
    await agent_sets_success(database, row["id"])
    renamed = NodeRow("uuid-1", "test-vm-1-new")
    await repo.apply(
        "ns", "cfg", DesiredState((SUBNET,), (renamed,), (replace(port(1, 1), node_name="test-vm-1-new"),))
    )
    assert await agent_query(database, "test-vm-1") == []
    (moved,) = await agent_query(database, "test-vm-1-new")
    assert moved["id"] == row["id"] and moved["netplan_success"] == 0


async def test_two_crs_sharing_a_subnet(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "a", desired(port(1, 1)))
    await repo.apply("other", "b", desired(port(2, 2)))
    subnets = (await dump(database))["multi_subnet"]
    assert len(subnets) == 1
    await repo.remove("ns", "a")
    subnets = (await dump(database))["multi_subnet"]
    assert subnets[0]["deleted_at"] is None, "still used by other/b"
    assert await agent_query(database, "test-vm-1") == []
    assert len(await agent_query(database, "test-vm-2")) == 1
    await repo.remove("other", "b")
    subnets = (await dump(database))["multi_subnet"]
    assert subnets[0]["deleted_at"] is not None


async def test_port_owned_by_another_cr_is_a_conflict_not_a_steal(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "a", desired(port(1, 1)))
    result = await repo.apply("ns", "b", desired(port(1, 1)))
    assert [(r.port_id, owner) for r, owner in result.diff.conflicts] == [("port-1", "ns/a")]
    (row,) = (await dump(database))["multi_interface"]
    assert (row["cr_namespace"], row["cr_name"]) == ("ns", "a")


async def test_remove_deletes_rows_and_state(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "cfg", desired(port(1, 1), port(2, 2)), spec_hash="b" * 64)
    assert (await repo.state_of("ns", "cfg")) is not None
    assert await repo.remove("ns", "cfg") == 2
    state = await dump(database)
    assert state["multi_interface"] == [] and state["cr_state"] == []
    assert all(n["deleted_at"] is not None for n in state["node_table"])


async def test_spec_hash_stored_with_rows(repo: Repository) -> None:
    assert await repo.state_of("ns", "cfg") is None
    await repo.apply("ns", "cfg", desired(port(1, 1)), spec_hash="c" * 64)
    state = await repo.state_of("ns", "cfg")
    assert state is not None and state.spec_hash == "c" * 64


async def test_failure_mid_transaction_leaves_database_as_before(
    repo: Repository, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    await repo.apply("ns", "cfg", desired(port(1, 1), port(2, 2)), spec_hash="d" * 64)
    before = await dump(database)

    original = Repository._upsert_nodes

    async def explode(self: Repository, cur: Any, nodes: Any) -> int:
        await original(self, cur, nodes)  # the deletes, subnet and node writes have happened by now
        raise RuntimeError("injected failure")

    monkeypatch.setattr(Repository, "_upsert_nodes", explode)
    changed = desired(port(1, 1, ip="192.168.100.200"), port(3, 3), subnets=(SUBNET,))
    with pytest.raises(RuntimeError, match="injected failure"):
        await repo.apply("ns", "cfg", changed, spec_hash="e" * 64)
    assert await dump(database) == before


async def test_plan_reports_diff_without_writing(repo: Repository, database: Database) -> None:
    await repo.apply("ns", "cfg", desired(port(1, 1), port(2, 2)))
    before = await dump(database)
    diff = await repo.plan("ns", "cfg", desired(port(1, 1, ip="192.168.100.50"), port(3, 3)))
    assert [r.port_id for r in diff.added] == ["port-3"]
    assert [c.new.port_id for c in diff.changed] == ["port-1"]
    assert [r.port_id for r in diff.removed] == ["port-2"]
    assert await dump(database) == before


async def test_every_statement_observed(repo: Repository) -> None:
    from multinic_ctrl.metrics import REGISTRY

    await repo.apply("ns", "cfg", desired(port(1, 1)))
    count = REGISTRY.get_sample_value(
        "multinic_database_operation_duration_seconds_count", {"operation": "apply", "result": "success"}
    )
    assert count is not None and count >= 1
    assert REGISTRY.get_sample_value("multinic_active_db_connections") == 0


# ----------------------------------------------------- rows of VMs whose state is unknown (issue 11, item 2)
async def test_kept_rows_survive_untouched(repo: Repository, database: Database) -> None:
    """A VM Nova could not vouch for ("present, state unknown"): its rows keep id and netplan_success, its
    node stays live, and the agent on it sees exactly what it saw before."""
    from multinic_ctrl.db.repository import KeepRows

    await repo.apply("ns", "cfg", desired(port(1, 1), port(2, 2), port(3, 2)))
    vm2 = await agent_query(database, "test-vm-2")
    await agent_sets_success(database, vm2[0]["id"])
    vm2 = await agent_query(database, "test-vm-2")
    # test-vm-2 is missing from Nova's answer, but its server is one of those in a cell that does not answer.
    keep = KeepRows(node_names=frozenset({"test-vm-2"}), node_ids=frozenset({VM[2].node_id}))
    result = await repo.apply("ns", "cfg", desired(port(1, 1)), keep=keep, spec_hash="b" * 64)
    assert result.diff.removed == () and result.diff.added == () and result.diff.changed == ()
    assert sorted(r.port_id for r in result.diff.unchanged) == ["port-1", "port-2", "port-3"]
    assert await agent_query(database, "test-vm-2") == vm2
    nodes = {r["attached_node_name"]: r for r in (await dump(database))["node_table"]}
    assert nodes["test-vm-2"]["deleted_at"] is None
    assert result.swept == ()
    assert (await repo.state_of("ns", "cfg")) is not None  # the sync counts: the hash is stored
    # plan agrees with apply.
    assert (await repo.plan("ns", "cfg", desired(port(1, 1)), keep=keep)).removed == ()
    # Once Nova answers again without the VM, its rows go.
    result = await repo.apply("ns", "cfg", desired(port(1, 1)))
    assert sorted(r.port_id for r in result.diff.removed) == ["port-2", "port-3"]
    assert await agent_query(database, "test-vm-2") == []


async def test_keep_is_limited_to_its_servers_subnets_and_unlisted_ports(repo: Repository, database: Database) -> None:
    from multinic_ctrl.db.repository import KeepRows

    await repo.apply(
        "ns",
        "cfg",
        desired(
            port(1, 1), port(2, 2), port(3, 3, subnet=OTHER_SUBNET, ip="10.10.0.3"), subnets=(SUBNET, OTHER_SUBNET)
        ),
    )
    keep = KeepRows(node_names=frozenset({"test-vm-2", "test-vm-3"}), node_ids=frozenset({"uuid-elsewhere", "uuid-3"}))
    # test-vm-2's rows name a server that is not among the unreachable ones: it is gone. test-vm-3's row sits on
    # a subnet the spec no longer names: the user's decision. test-vm-1's port is desired with a new address.
    result = await repo.apply("ns", "cfg", desired(port(1, 1, ip="192.168.100.99")), keep=keep)
    assert sorted(r.port_id for r in result.diff.removed) == ["port-2", "port-3"]
    assert [c.new.address for c in result.diff.changed] == ["192.168.100.99"]
    assert await agent_query(database, "test-vm-2") == [] and await agent_query(database, "test-vm-3") == []
    # Without node IDs (Nova's answer may have left servers out) any server under the name is kept.
    await repo.apply("ns", "cfg", desired(port(1, 1), port(2, 2)))
    result = await repo.apply("ns", "cfg", desired(port(1, 1)), keep=KeepRows(node_names=frozenset({"test-vm-2"})))
    assert result.diff.removed == () and len(await agent_query(database, "test-vm-2")) == 1
    # An empty set of unreachable servers keeps nothing.
    result = await repo.apply(
        "ns", "cfg", desired(port(1, 1)), keep=KeepRows(node_names=frozenset({"test-vm-2"}), node_ids=frozenset())
    )
    assert [r.port_id for r in result.diff.removed] == ["port-2"]


def many(count: int, first: int = 100) -> DesiredState:
    """A config of `count` VMs the table has never seen, one port each."""
    nodes = tuple(NodeRow(f"uuid-{i}", f"vm-{i}") for i in range(first, first + count))
    ports = tuple(
        InterfaceRow(
            f"port-{i}",
            SUBNET.subnet_id,
            f"FA:16:3E:00:{i // 256:02X}:{i % 256:02X}",
            f"192.168.{i // 250}.{i % 250 + 1}",
            1450,
            n.node_id,
            n.node_name,
        )
        for i, n in zip(range(first, first + count), nodes, strict=True)
    )
    return DesiredState(subnets=(SUBNET,), nodes=nodes, interfaces=ports)


async def test_a_new_configs_statements_do_not_grow_with_its_vms(
    repo: Repository, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New nodes and interfaces go in as multi-row INSERTs: each round trip costs the controller more than a row
    (a cold start writes thousands of configs), so a config of 40 VMs takes as many statements as one of 1."""
    from multinic_ctrl.db import pool

    statements: list[str] = []
    original = pool._Cursor.execute

    async def counting(self: Any, query: str, args: Any = None) -> Any:
        statements.append(query)
        return await original(self, query, args)

    monkeypatch.setattr(pool._Cursor, "execute", counting)
    await repo.apply("ns", "warm-up", many(1, first=1000), spec_hash="a" * 64)  # the subnet row exists from now on
    counts = []
    for name, state in (("one", many(1, first=100)), ("forty", many(40, first=200))):
        statements.clear()
        await repo.apply("ns", name, state, spec_hash="b" * 64)
        counts.append(len(statements))
    assert counts[0] == counts[1], statements
    for name, state in (("one", many(1, first=100)), ("forty", many(40, first=200))):
        rows = await repo.interfaces_of("ns", name)
        assert {r.row for r in rows} == set(state.interfaces)
        for node in state.nodes:
            assert [r["address"] for r in await agent_query(database, node.node_name)] == [
                i.address for i in state.interfaces if i.node_id == node.node_id
            ]


async def test_new_nodes_are_inserted_alongside_a_rename(repo: Repository, database: Database) -> None:
    """One config: a VM renamed (its row is updated in place) and two new VMs (inserted together)."""
    await repo.apply("ns", "cfg", desired(port(1, 1)))
    renamed = NodeRow(VM[1].node_id, "test-vm-1-renamed")
    new = [NodeRow("uuid-new-1", "new-vm-1"), NodeRow("uuid-new-2", "new-vm-2")]
    ports = (
        replace(port(1, 1), node_name=renamed.node_name),
        replace(port(2, 1), node_id=new[0].node_id, node_name=new[0].node_name),
        replace(port(3, 1), node_id=new[1].node_id, node_name=new[1].node_name),
    )
    result = await repo.apply("ns", "cfg", DesiredState(subnets=(SUBNET,), nodes=(renamed, *new), interfaces=ports))
    assert result.nodes_written == 3
    nodes = {r["attached_node_id"]: r["attached_node_name"] for r in (await dump(database))["node_table"]}
    assert nodes == {VM[1].node_id: "test-vm-1-renamed", "uuid-new-1": "new-vm-1", "uuid-new-2": "new-vm-2"}
    for node, ip in ((renamed, "192.168.100.11"), (new[0], "192.168.100.12"), (new[1], "192.168.100.13")):
        assert [r["address"] for r in await agent_query(database, node.node_name)] == [ip]
    assert await agent_query(database, "test-vm-1") == []


async def test_states_reads_every_configs_state_at_once(repo: Repository) -> None:
    await repo.apply("ns", "a", desired(port(1, 1)), spec_hash="a" * 64)
    await repo.apply("ns", "b", desired(port(2, 2)), spec_hash="b" * 64)
    await repo.apply("other", "c", desired(port(3, 3)))  # no hash: no state
    states = await repo.states()
    assert set(states) == {("ns", "a"), ("ns", "b")}
    assert states["ns", "a"] == await repo.state_of("ns", "a")
    assert states["ns", "b"].spec_hash == "b" * 64
