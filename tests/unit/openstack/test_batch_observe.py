"""Batched observation: every config's slice of one batch equals observing that config alone.

The property test draws random simulator worlds (projects, shared and duplicated subnet names, look-alike and
duplicated server names, servers of another project or in an unreachable cell, ports with several addresses,
pagination, compute endpoints with and without microversion 2.69) and random configs (VM names that overlap
by prefix, missing VMs, unknown subnets), then compares each config's slice of one batch with a one-by-one
observation of it - observations and errors alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multinic_ctrl.openstack import (
    AmbiguousServer,
    AmbiguousSubnet,
    Observation,
    OpenStackError,
    OpenStackUnavailable,
    SubnetNotFound,
)
from multinic_ctrl.openstack.observe import ObserveRequest
from tests.fakes.openstack import SimState, Simulator, running_simulator
from tests.fakes.openstack.state import FixedIP

from .conftest import make_client

P, Q = "your-project-id", "other-project"
VM_NAMES = ["vm-1", "vm-10", "vm-1.x", "VM-1", "vm-2", "web-1", "web-12", "db", "db-0", "a|b", "a", "vm.1", "x(1)"]
SUBNET_NAMES = ["s-a", "s-b", "s-c"]
OBSERVE_CALLS = {"network.subnets": 1, "compute.servers": 1, "network.ports": 1, "network.networks": 1}


@dataclass(frozen=True)
class World:
    admin: bool
    networks: tuple[tuple[str, str, int], ...]  # (owner project, shared: none|all|P, mtu)
    subnets: tuple[tuple[int, str], ...]  # (network index, name)
    servers: tuple[tuple[str, str, bool], ...]  # (name, project, down cell)
    ports: tuple[tuple[int, int, int | None], ...]  # (server index or -1, subnet index, 2nd subnet index)
    configs: tuple[tuple[tuple[str, ...], str], ...]
    page_size: int | None
    microversion: str | None


@st.composite
def worlds(draw: st.DrawFn) -> World:
    networks = draw(
        st.lists(
            st.tuples(
                st.sampled_from([P, P, Q]),
                st.sampled_from(["none", "none", "all", P]),
                st.sampled_from([1400, 1450, 1500]),
            ),
            min_size=1,
            max_size=4,
        )
    )
    subnets = draw(
        st.lists(st.tuples(st.integers(0, len(networks) - 1), st.sampled_from(SUBNET_NAMES)), min_size=1, max_size=5)
    )
    servers = draw(
        st.lists(
            st.tuples(
                st.sampled_from(VM_NAMES),
                st.sampled_from([P, P, P, Q]),
                st.sampled_from([False] * 9 + [True]),
            ),
            max_size=10,
        )
    )
    ports = draw(
        st.lists(
            st.tuples(
                st.integers(-1, len(servers) - 1),
                st.integers(0, len(subnets) - 1),
                st.one_of(st.none(), st.integers(0, len(subnets) - 1)),
            ),
            max_size=12,
        )
    )
    # Configs mostly ask for servers that exist, so that their slices overlap (shared servers, shared subnets).
    known = sorted({name for name, _, _ in servers}) or ["vm-1"]
    configs = draw(
        st.lists(
            st.tuples(
                st.lists(st.sampled_from([*known, *known, "ghost", "vm-1"]), unique=True, max_size=4).map(tuple),
                st.sampled_from([*SUBNET_NAMES, *SUBNET_NAMES, "nope"]),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return World(
        admin=draw(st.booleans()),
        networks=tuple(networks),
        subnets=tuple(subnets),
        servers=tuple(servers),
        ports=tuple(ports),
        configs=tuple(configs),
        page_size=draw(st.sampled_from([None, None, 1, 2, 3])),
        microversion=draw(st.sampled_from(["2.96", "2.96", "2.60", None])),
    )


def build(world: World) -> SimState:
    state = SimState()
    state.add_project(P, "admin")
    state.add_project(Q, "other")
    state.add_user("admin", "admin", projects=[] if world.admin else [P], admin=world.admin)
    nets = []
    for i, (owner, shared, mtu) in enumerate(world.networks):
        flag: bool | list[str] = True if shared == "all" else [P] if shared == P else False
        nets.append(state.add_network(f"net-{i}", mtu, project_id=owner, shared=flag))
    subs = [state.add_subnet(name, nets[n].id, f"10.{i}.0.0/24") for i, (n, name) in enumerate(world.subnets)]
    servers = []
    for name, project, _down in world.servers:
        servers.append(state.add_server(name, project_id=project))
    for k, (holder, subnet, second) in enumerate(world.ports):
        device = servers[holder].id if holder >= 0 else ""
        port = state.add_port(subs[subnet].id, f"10.{subnet}.0.{10 + k}", device)
        if second is not None:
            # Neutron gives a port addresses on subnets of its own network only.
            index = second if subs[second].network_id == subs[subnet].network_id else subnet
            port.fixed_ips.append(FixedIP(subs[index].id, f"10.{index}.0.{100 + k}"))
    for server, (_, _, down) in zip(servers, world.servers, strict=True):
        if down:
            state.set_cell_down(server.id)
    return state


Outcome = Observation | tuple[type[BaseException], str]


async def one_by_one(sim: Simulator, world: World) -> list[Outcome]:
    client = make_client(page_size=world.page_size)
    outcomes: list[Outcome] = []
    try:
        for names, subnet in world.configs:
            try:
                outcomes.append(await client.observe(sim.credentials(), names, subnet))
            except OpenStackError as exc:
                outcomes.append((type(exc), str(exc)))
    finally:
        await client.close()
    return outcomes


async def batched(sim: Simulator, world: World) -> list[Outcome]:
    client = make_client(page_size=world.page_size)
    try:
        requests = [ObserveRequest(names, subnet) for names, subnet in world.configs]
        batch = await client.observe_batch(sim.credentials(), requests)
    finally:
        await client.close()
    outcomes: list[Outcome] = []
    for request in requests:
        assert batch.covers(request.vm_names, request.subnet_name)
        try:
            outcomes.append(batch.slice(request.vm_names, request.subnet_name))
        except OpenStackError as exc:
            outcomes.append((type(exc), str(exc)))
    return outcomes


async def compare(world: World) -> None:
    async with running_simulator(build(world), nova_max_microversion=world.microversion) as sim:
        alone = await one_by_one(sim, world)
        together = await batched(sim, world)
    assert together == alone


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_each_slice_equals_observing_the_config_alone(world: World) -> None:
    asyncio.run(compare(world))


# ------------------------------------------------------------------------------------------ examples
def twins_world() -> SimState:
    state = SimState()
    state.add_project(P, "admin")
    state.add_user("admin", "admin")
    net = state.add_network("k8s-net", 1450)
    other = state.add_network("other-net", 9000)
    sub = state.add_subnet("k8s-subnet", net.id, "10.1.0.0/16")
    state.add_subnet("other-subnet", other.id, "10.2.0.0/16")
    state.add_subnet("twin", net.id, "10.3.0.0/24")
    state.add_subnet("twin", other.id, "10.4.0.0/24")
    for i in range(1, 101):
        server = state.add_server(f"node-{i}")
        state.add_port(sub.id, f"10.1.{i // 250}.{i % 250 + 1}", server.id)
    state.add_server("dup")
    state.add_server("dup")
    return state


def requests(*configs: tuple[Sequence[str], str]) -> list[ObserveRequest]:
    return [ObserveRequest(tuple(names), subnet) for names, subnet in configs]


async def test_one_config_error_does_not_fail_the_others() -> None:
    async with running_simulator(twins_world()) as sim:
        client = make_client()
        try:
            reqs = requests(
                (["node-1", "node-2"], "k8s-subnet"),
                (["node-3"], "no-such-subnet"),
                (["node-4", "dup"], "k8s-subnet"),
                (["node-5"], "twin"),
                (["node-6", "ghost"], "k8s-subnet"),
                (["node-7"], "other-subnet"),
            )
            alone = [await client.observe(sim.credentials(), ["node-1", "node-2"], "k8s-subnet")]
            sim.request_log.clear()
            batch = await client.observe_batch(sim.credentials(), reqs)
        finally:
            await client.close()
    assert batch.slice(*astuple(reqs[0])) == alone[0]
    with pytest.raises(SubnetNotFound, match="no-such-subnet"):
        batch.slice(*astuple(reqs[1]))
    with pytest.raises(AmbiguousServer, match="'dup'"):
        batch.slice(*astuple(reqs[2]))
    with pytest.raises(AmbiguousSubnet, match="'twin'"):
        batch.slice(*astuple(reqs[3]))
    missing = batch.slice(*astuple(reqs[4]))
    assert missing.missing_vms == ("ghost",) and [s.name for s in missing.servers] == ["node-6"]
    other = batch.slice(*astuple(reqs[5]))
    assert other.subnet.mtu == 9000 and other.ports == ()  # node-7 has no port there
    # Six configs, two networks, a missing VM: one call per kind and name family (node-*, dup, ghost), plus the
    # shared-subnet fallback for the unknown name, the cells check for the missing VM and the version document.
    counts = dict(sim.request_log.counts())
    assert counts == {
        "network.subnets": 2,
        "compute.servers": 4,
        "compute.versions": 1,
        "network.ports": 1,
        "network.networks": 1,
    }


def astuple(request: ObserveRequest) -> tuple[tuple[str, ...], str]:
    return request.vm_names, request.subnet_name


@pytest.mark.parametrize("configs", [1, 10, 100])
async def test_calls_per_batch_are_constant_in_the_number_of_configs(configs: int) -> None:
    async with running_simulator(twins_world()) as sim:
        client = make_client()
        try:
            await client.observe(sim.credentials(), ["node-1"], "k8s-subnet")  # warm the token
            sim.request_log.clear()
            reqs = requests(*(([f"node-{i + 1}"], "k8s-subnet") for i in range(configs)))
            batch = await client.observe_batch(sim.credentials(), reqs)
        finally:
            await client.close()
    assert dict(sim.request_log.counts()) == OBSERVE_CALLS
    assert all(len(batch.slice(*astuple(r)).ports) == 1 for r in reqs)


async def test_a_transport_error_fails_the_whole_batch() -> None:
    async with running_simulator(twins_world()) as sim:
        client = make_client(attempts=2)
        try:
            sim.faults.fail_next("network.ports", 2)
            with pytest.raises(OpenStackUnavailable):
                await client.observe_batch(
                    sim.credentials(), requests((["node-1"], "k8s-subnet"), (["node-2"], "twin"))
                )
        finally:
            await client.close()


def request_line(record: object) -> int:
    path, query = record.path, record.query  # type: ignore[attr-defined]
    return len(f"GET {path}?{urlencode(query)} HTTP/1.1")


async def test_long_value_lists_are_chunked_into_bounded_request_lines() -> None:
    state = SimState()
    state.add_project(P, "admin")
    state.add_user("admin", "admin")
    subnets = []
    for i in range(60):  # more subnets and networks than one query line holds
        net = state.add_network(f"net-{i}", 1400 + i)
        subnets.append(state.add_subnet(f"subnet-with-a-long-name-{i:03d}", net.id, f"10.{i}.0.0/24"))
    reqs = []
    for i, sub in enumerate(subnets):
        server = state.add_server(f"host-{i}")
        state.add_port(sub.id, f"10.{i}.0.5", server.id)
        reqs.append(ObserveRequest((server.name,), sub.name))
    async with running_simulator(state) as sim:
        client = make_client()
        try:
            batch = await client.observe_batch(sim.credentials(), reqs)
        finally:
            await client.close()
        assert max(request_line(r) for r in sim.request_log) < 6500  # the filters' budget, the path and `fields`
        counts = sim.request_log.counts()
    for i, r in enumerate(reqs):
        obs = batch.slice(*astuple(r))
        assert obs.subnet.mtu == 1400 + i and [p.ip for p in obs.ports] == [f"10.{i}.0.5"]
    assert counts["network.ports"] == 1  # 60 devices fit one query: the subnets filter is dropped instead
    assert counts["network.networks"] == 1


async def test_too_many_devices_and_subnets_for_one_query() -> None:
    state = SimState()
    state.add_project(P, "admin")
    state.add_user("admin", "admin")
    reqs = []
    for i in range(60):
        net = state.add_network(f"net-{i}", 1500)
        sub = state.add_subnet(f"subnet-{i:03d}", net.id, f"10.{i}.0.0/24")
        names = []
        for k in range(5):  # 300 servers: their IDs do not fit one query either
            server = state.add_server(f"host-{i}-{k}")
            state.add_port(sub.id, f"10.{i}.0.{k + 5}", server.id)
            names.append(server.name)
        reqs.append(ObserveRequest(tuple(names), sub.name))
    async with running_simulator(state) as sim:
        client = make_client()
        try:
            batch = await client.observe_batch(sim.credentials(), reqs)
        finally:
            await client.close()
        assert max(request_line(r) for r in sim.request_log) < 6500
        ports_queries = sim.request_log.for_endpoint("network.ports")
    assert 1 < len(ports_queries) <= 4 and all("device_id" not in dict(r.query) for r in ports_queries)
    for i, r in enumerate(reqs):
        assert sorted(p.ip for p in batch.slice(*astuple(r)).ports) == [f"10.{i}.0.{k + 5}" for k in range(5)]


async def test_names_of_configs_share_server_queries() -> None:
    async with running_simulator(twins_world()) as sim:
        client = make_client(page_size=25)
        try:
            reqs = requests(*(([f"node-{i}" for i in range(k, k + 10)], "k8s-subnet") for k in range(1, 100, 10)))
            batch = await client.observe_batch(sim.credentials(), reqs)
        finally:
            await client.close()
        patterns = {dict(r.query)["name"] for r in sim.request_log.for_endpoint("compute.servers")}
    assert patterns == {"^node-"}  # one family for the union of ten configs' names
    assert sum(len(batch.slice(*astuple(r)).servers) for r in reqs) == 100
