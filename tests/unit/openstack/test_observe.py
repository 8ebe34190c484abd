"""observe() against the simulator: results, exact matching, call counts, pagination."""

from __future__ import annotations

import asyncio

import pytest

from multinic_ctrl.openstack import (
    AmbiguousServer,
    AmbiguousSubnet,
    OpenStackClient,
    PaginationError,
    SubnetNotFound,
)
from multinic_ctrl.openstack.network import DEVICE_ID_QUERY_BUDGET
from tests.fakes.openstack import SimState, Simulator, running_simulator

from .conftest import make_client


async def test_mission_example(sim: Simulator, client: OpenStackClient) -> None:
    obs = await client.observe(sim.credentials(), ["test-vm-1", "test-vm-2", "test-vm-3"], "k8s-subnet")
    assert obs.subnet.name == "k8s-subnet"
    assert obs.subnet.cidr == "192.168.100.0/24"
    assert obs.subnet.mtu == 1450
    assert [s.name for s in obs.servers] == ["test-vm-1", "test-vm-2", "test-vm-3"]
    assert obs.missing_vms == ()
    assert [(p.ip, p.mac) for p in obs.ports] == [
        ("192.168.100.11", "fa:16:3e:00:01:01"),  # seeded upper case, returned lower case
        ("192.168.100.12", "fa:16:3e:00:01:02"),
        ("192.168.100.13", "fa:16:3e:00:01:03"),
    ]
    server_ids = {s.id for s in obs.servers}
    assert all(p.device_id in server_ids and p.network_id == obs.subnet.network_id for p in obs.ports)


async def test_exact_matching_ignores_look_alikes(sim: Simulator, client: OpenStackClient) -> None:
    obs = await client.observe(sim.credentials(), ["test-vm-1"], "k8s-subnet")
    assert [s.name for s in obs.servers] == ["test-vm-1"]
    assert [p.ip for p in obs.ports] == ["192.168.100.11"]  # not the mgmt-subnet port, not test-vm-10's
    # With look-alikes requested too, each is matched exactly once.
    obs = await client.observe(sim.credentials(), ["test-vm-1", "test-vm-1.backup"], "k8s-subnet")
    assert [(s.name, s.status) for s in obs.servers] == [
        ("test-vm-1", "ACTIVE"),
        ("test-vm-1.backup", "SHUTOFF"),
    ]


async def test_x_suffix_look_alike(sim: Simulator, client: OpenStackClient) -> None:
    sim.state.add_server("test-vm-1.x")
    obs = await client.observe(sim.credentials(), ["test-vm-1"], "k8s-subnet")
    assert [s.name for s in obs.servers] == ["test-vm-1"]


async def test_missing_vms_are_reported_not_raised(sim: Simulator, client: OpenStackClient) -> None:
    obs = await client.observe(sim.credentials(), ["test-vm-3", "test-vm-4", "ghost"], "k8s-subnet")
    assert [s.name for s in obs.servers] == ["test-vm-3"]
    assert obs.missing_vms == ("test-vm-4", "ghost")


async def test_names_with_regex_metacharacters(sim: Simulator, client: OpenStackClient) -> None:
    subnet = sim.state.find_subnet("k8s-subnet")
    weird = ["vm.1", "vm+1", "vm(1)", "vm[1]", "vm*", "vm?1", "vm^1", "vm$1", "vm{1}", "vm\\1", "a|b"]
    decoys = ["vmx1", "vm1", "vmm1", "a", "b", "vm(1)x", "xa|b"]
    for i, name in enumerate(weird + decoys):
        server = sim.state.add_server(name)
        sim.state.add_port(subnet.id, f"192.168.100.{150 + i}", server.id)
    obs = await client.observe(sim.credentials(), weird, "k8s-subnet")
    assert sorted(s.name for s in obs.servers) == sorted(weird)
    assert obs.missing_vms == ()
    assert len(obs.ports) == len(weird)
    for record in sim.request_log.for_endpoint("compute.servers"):
        assert "|" not in dict(record.query)["name"]


async def test_no_vms_still_reports_subnet(sim: Simulator, client: OpenStackClient) -> None:
    obs = await client.observe(sim.credentials(), [], "k8s-subnet")
    assert obs.servers == () and obs.ports == () and obs.subnet.mtu == 1450


async def test_subnet_not_found(sim: Simulator, client: OpenStackClient) -> None:
    with pytest.raises(SubnetNotFound, match="subnet 'nope' not found"):
        await client.observe(sim.credentials(), ["test-vm-1"], "nope")


async def test_ambiguous_subnet_lists_ids_and_networks(sim: Simulator, client: OpenStackClient) -> None:
    net = sim.state.add_network("other-net", 1500)
    dup = sim.state.add_subnet("k8s-subnet", net.id, "172.16.0.0/24")
    with pytest.raises(AmbiguousSubnet) as info:
        await client.observe(sim.credentials(), ["test-vm-1"], "k8s-subnet")
    assert dup.id in str(info.value) and net.id in str(info.value)
    assert "6a1b7c9e-1111-4c3d-9e8f-000000000001" in str(info.value)


async def test_duplicate_server_names_are_an_error(sim: Simulator, client: OpenStackClient) -> None:
    twin = sim.state.add_server("test-vm-2")
    with pytest.raises(AmbiguousServer, match=twin.id):
        await client.observe(sim.credentials(), ["test-vm-2"], "k8s-subnet")


async def test_port_of_unknown_device_and_detached_ports_are_ignored(sim: Simulator, client: OpenStackClient) -> None:
    vm2 = sim.state.find_server("test-vm-2")
    sim.state.remove_server(vm2.id)  # its port stays, detached
    obs = await client.observe(sim.credentials(), ["test-vm-1", "test-vm-2"], "k8s-subnet")
    assert obs.missing_vms == ("test-vm-2",)
    assert [p.ip for p in obs.ports] == ["192.168.100.11"]


def big_seed(n: int) -> SimState:
    state = SimState()
    state.add_project("your-project-id", "admin")
    state.add_user("admin", "admin")
    net = state.add_network("k8s-net", 1450)
    sub = state.add_subnet("k8s-subnet", net.id, "10.10.0.0/16")
    for i in range(1, n + 1):
        server = state.add_server(f"test-vm-{i}")
        state.add_port(sub.id, f"10.10.{i // 250}.{i % 250 + 1}", server.id)
    return state


async def test_call_count_is_constant_in_vm_count() -> None:
    counts = {}
    async with running_simulator(big_seed(120)) as sim:
        client = make_client()
        try:
            creds = sim.credentials()
            await client.observe(creds, ["test-vm-1"], "k8s-subnet")  # warm the token
            for n in (1, 10, 100):
                sim.request_log.clear()
                obs = await client.observe(creds, [f"test-vm-{i}" for i in range(1, n + 1)], "k8s-subnet")
                assert len(obs.servers) == n and len(obs.ports) == n
                counts[n] = dict(sim.request_log.counts())
        finally:
            await client.close()
    expected = {"network.subnets": 1, "compute.servers": 1, "network.ports": 1, "network.networks": 1}
    assert counts == {1: expected, 10: expected, 100: expected}


async def test_fresh_client_authenticates_once_for_many_concurrent_lookups(sim: Simulator) -> None:
    client = make_client()
    try:
        creds = sim.credentials()
        results = await asyncio.gather(
            *(client.observe(creds, [f"test-vm-{i % 3 + 1}"], "k8s-subnet") for i in range(20))
        )
        for _ in range(5):
            await client.observe(creds, ["test-vm-1"], "k8s-subnet")
    finally:
        await client.close()
    assert len(results) == 20
    assert sim.calls("identity.tokens") == 1


async def test_one_token_per_credential_set(sim: Simulator) -> None:
    sim.state.add_user("other", "pw")
    client = make_client()
    try:
        await asyncio.gather(
            client.observe(sim.credentials(), ["test-vm-1"], "k8s-subnet"),
            client.observe(sim.credentials(username="other", password="pw"), ["test-vm-1"], "k8s-subnet"),
            client.observe(sim.credentials(), ["test-vm-2"], "k8s-subnet"),
        )
    finally:
        await client.close()
    assert sim.calls("identity.tokens") == 2


async def test_pagination_across_pages_for_servers_and_ports() -> None:
    async with running_simulator(big_seed(25)) as sim:
        client = make_client(page_size=4)
        try:
            obs = await client.observe(sim.credentials(), [f"test-vm-{i}" for i in range(1, 26)], "k8s-subnet")
        finally:
            await client.close()
        assert len(obs.servers) == 25 and len(obs.ports) == 25
        # 25 servers / 4 per page = 7 pages (Nova adds a next link to every full page, none after the 7th).
        assert sim.calls("compute.servers") == 7
        assert sim.calls("network.ports") == 7
        markers = [dict(r.query).get("marker") for r in sim.request_log.for_endpoint("network.ports")]
        assert markers[0] is None and len(set(markers[1:])) == 6


async def test_nova_trailing_empty_page(sim: Simulator) -> None:
    client = make_client(page_size=5)  # exactly 5 servers match ^test-vm-: a full page, then an empty one
    try:
        obs = await client.observe(sim.credentials(), ["test-vm-1", "test-vm-2"], "k8s-subnet")
    finally:
        await client.close()
    assert len(obs.servers) == 2
    assert sim.calls("compute.servers") == 2


@pytest.mark.parametrize("endpoint", ["compute.servers", "network.ports"])
async def test_repeated_marker_guard(sim: Simulator, endpoint: str) -> None:
    sim.faults.loop_pagination(endpoint)
    client = make_client(page_size=1)
    try:
        with pytest.raises(PaginationError, match="repeats marker"):
            await client.observe(sim.credentials(), ["test-vm-1", "test-vm-2", "test-vm-3"], "k8s-subnet")
    finally:
        await client.close()
    assert sim.calls(endpoint) < 10


async def test_huge_device_list_falls_back_to_subnet_filter() -> None:
    n = DEVICE_ID_QUERY_BUDGET // 40 + 20  # more UUIDs than fit in one request line
    async with running_simulator(big_seed(n)) as sim:
        client = make_client()
        try:
            obs = await client.observe(sim.credentials(), [f"test-vm-{i}" for i in range(1, n + 1)], "k8s-subnet")
        finally:
            await client.close()
        assert len(obs.ports) == n
        assert sim.calls("network.ports") == 1
        (record,) = sim.request_log.for_endpoint("network.ports")
        assert "device_id" not in dict(record.query)
