"""Subnets are resolved in the config's project (issue 11, item 3), against the simulator.

With admin credentials Neutron returns same-named subnets of every project. The client prefers the subnet
owned by the token's project, then a unique subnet shared with it, else AmbiguousSubnet with the candidates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from multinic_ctrl.controller.desired import desired_rows
from multinic_ctrl.openstack import AmbiguousSubnet, OpenStackClient, SubnetNotFound
from multinic_ctrl.openstack.network import find_subnet
from tests.fakes.openstack import SimState, Simulator, running_simulator

from .conftest import make_client

MINE, THEIRS, SHARER = "your-project-id", "0ther0ther0ther0ther0ther0ther00", "5hared5hared5hared5hared5hared00"
VMS = ["test-vm-1", "test-vm-2", "test-vm-3"]


def twin_projects() -> SimState:
    """The default seed plus a second project with the same network, subnet and server names."""
    from tests.fakes.openstack.fixtures import DEFAULT_SEED, load_seed

    state = load_seed(DEFAULT_SEED)
    state.add_project(THEIRS, "other")
    state.add_project(SHARER, "sharer")
    net = state.add_network("k8s-net", 1450, project_id=THEIRS)
    sub = state.add_subnet("k8s-subnet", net.id, "172.16.0.0/24")
    for i, name in enumerate(VMS, start=1):
        server = state.add_server(name, project_id=THEIRS)
        state.add_port(sub.id, f"172.16.0.{10 + i}", server.id)
    return state


@pytest.fixture
async def twins() -> AsyncIterator[Simulator]:
    async with running_simulator(twin_projects()) as s:
        yield s


def subnet_queries(sim: Simulator) -> list[dict[str, str]]:
    return [{k: v for k, v in r.query if k != "fields"} for r in sim.request_log.for_endpoint("network.subnets")]


async def test_admin_gets_the_scoped_projects_subnet_servers_and_rows(
    twins: Simulator, client: OpenStackClient
) -> None:
    """Fails on a name-only lookup: the admin sees both k8s-subnets and the config errors as ambiguous."""
    obs = await client.observe(twins.credentials(), VMS, "k8s-subnet")
    assert (obs.subnet.id, obs.subnet.cidr) == ("0c2f4b6d-2222-4e5f-8a9b-000000000001", "192.168.100.0/24")
    assert [s.id for s in obs.servers] == [twins.state.find_server(n, MINE).id for n in VMS]
    rows = desired_rows(obs)
    assert {i.address for i in rows.interfaces} == {"192.168.100.11", "192.168.100.12", "192.168.100.13"}
    assert {i.subnet_id for i in rows.interfaces} == {obs.subnet.id}
    assert subnet_queries(twins) == [{"name": "k8s-subnet", "project_id": MINE}]

    theirs = await client.observe(twins.credentials(project_id=THEIRS), VMS, "k8s-subnet")
    assert theirs.subnet.cidr == "172.16.0.0/24"
    assert {p.ip for p in theirs.ports} == {"172.16.0.11", "172.16.0.12", "172.16.0.13"}
    assert not {s.id for s in obs.servers} & {s.id for s in theirs.servers}


async def test_another_projects_subnet_is_never_taken(twins: Simulator, client: OpenStackClient) -> None:
    """Fails on a name-only lookup: after the own subnet is renamed, the other project's would be used (and
    every row of the config deleted in favour of another project's ports)."""
    twins.state.subnets["0c2f4b6d-2222-4e5f-8a9b-000000000001"].name = "k8s-subnet-renamed"
    with pytest.raises(SubnetNotFound, match=f"'k8s-subnet' not found in project {MINE}"):
        await client.observe(twins.credentials(), VMS, "k8s-subnet")
    assert [q.get("shared") for q in subnet_queries(twins)] == [None, "True"]


async def test_a_unique_shared_subnet_when_the_project_owns_none(twins: Simulator, client: OpenStackClient) -> None:
    shared = twins.state.add_network("common-net", 1400, project_id=SHARER, shared=True)
    common = twins.state.add_subnet("common-subnet", shared.id, "10.99.0.0/24")
    vm1 = twins.state.find_server("test-vm-1", MINE)
    twins.state.add_port(common.id, "10.99.0.5", vm1.id)
    obs = await client.observe(twins.credentials(), ["test-vm-1"], "common-subnet")
    assert (obs.subnet.id, obs.subnet.mtu) == (common.id, 1400)
    assert [p.ip for p in obs.ports] == ["10.99.0.5"]
    assert len(subnet_queries(twins)) == 2


async def test_shared_only_with_another_project_is_not_visible(twins: Simulator, client: OpenStackClient) -> None:
    net = twins.state.add_network("rbac-net", project_id=SHARER, shared=[THEIRS])
    twins.state.add_subnet("rbac-subnet", net.id, "10.98.0.0/24")
    with pytest.raises(SubnetNotFound):
        await client.observe(twins.credentials(), [], "rbac-subnet")
    obs = await client.observe(twins.credentials(project_id=THEIRS), [], "rbac-subnet")
    assert obs.subnet.cidr == "10.98.0.0/24"


async def test_owned_beats_shared(twins: Simulator, client: OpenStackClient) -> None:
    shared = twins.state.add_network("common-net", project_id=SHARER, shared=True)
    twins.state.add_subnet("k8s-subnet", shared.id, "10.97.0.0/24")
    obs = await client.observe(twins.credentials(), [], "k8s-subnet")
    assert obs.subnet.cidr == "192.168.100.0/24"
    obs = await client.observe(twins.credentials(project_id=SHARER), [], "k8s-subnet")
    assert obs.subnet.cidr == "10.97.0.0/24"


async def test_two_shared_candidates_are_ambiguous_and_listed(twins: Simulator) -> None:
    """Across Neutron pages too (pagination_max_limit pages subnet listings): a lookup that read only the
    first page would pick one of them."""
    first = twins.state.add_network("a-net", project_id=SHARER, shared=True)
    second = twins.state.add_network("b-net", project_id=THEIRS, shared=True)
    a = twins.state.add_subnet("common-subnet", first.id, "10.1.0.0/24")
    b = twins.state.add_subnet("common-subnet", second.id, "10.2.0.0/24")
    client = make_client(page_size=1)
    try:
        with pytest.raises(AmbiguousSubnet) as caught:
            await client.observe(twins.credentials(), [], "common-subnet")
    finally:
        await client.close()
    assert sorted(caught.value.candidates) == sorted([(a.id, first.id, SHARER), (b.id, second.id, THEIRS)])
    message = str(caught.value)
    assert f"shared with project {MINE}" in message
    assert all(x in message for x in (a.id, b.id, first.id, second.id, SHARER, THEIRS))


async def test_two_owned_subnets_of_one_name_are_ambiguous(twins: Simulator, client: OpenStackClient) -> None:
    net = twins.state.add_network("second-net", project_id=MINE)
    dup = twins.state.add_subnet("k8s-subnet", net.id, "10.3.0.0/24")
    with pytest.raises(AmbiguousSubnet, match=f"owned by project {MINE}") as caught:
        await client.observe(twins.credentials(), [], "k8s-subnet")
    assert dup.id in str(caught.value)
    assert len(subnet_queries(twins)) == 1  # no shared query once the project owns the name


async def test_member_of_a_project_sees_its_own_and_shared_subnets_only(twins: Simulator) -> None:
    twins.state.add_user("member", "pw", projects=[MINE])
    client = make_client()
    try:
        obs = await client.observe(twins.credentials(username="member", password="pw"), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert obs.subnet.cidr == "192.168.100.0/24" and len(obs.ports) == 3


async def test_find_subnet_without_a_project_scope_uses_the_name_alone(twins: Simulator) -> None:
    """A token without project (cannot happen with a scoped config, but the function stays total)."""

    async def get_json(service: str, operation: str, url: str, params: object) -> object:
        import aiohttp

        token = twins.state.issue_token(twins.state.users[0], twins.state.projects[0]).value
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, params=list(params), headers={"X-Auth-Token": token}) as resp,
        ):
            return await resp.json()

    with pytest.raises(AmbiguousSubnet) as caught:
        await find_subnet(get_json, twins.url + "/v2.0", "k8s-subnet")
    assert len(caught.value.candidates) == 2
