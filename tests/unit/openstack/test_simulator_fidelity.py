"""The simulator behaves like real Neutron (29) where it used to diverge.

Reference: neutron.api.api_common (get_limit_and_marker, get_pagination_links, get_{next,previous}_link) and
neutron.api.v2.base (filter validation).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from multinic_ctrl.openstack.network import find_subnet, get_network_mtu, list_ports
from tests.fakes.openstack import SimState, Simulator, running_simulator
from tests.fakes.openstack.app import NETWORK_FILTERS, PORT_FILTERS, SUBNET_FILTERS

from .conftest import make_client

Params = Sequence[tuple[str, str]]

ORPHAN_PORT = "7e3a9f1c-4444-4d2b-b6c8-000000000099"  # default seed: device_id names no server
VM1 = "1d5e0c6a-3333-4b7a-8c9d-000000000001"
VM1_K8S_PORT = "7e3a9f1c-4444-4d2b-b6c8-000000000001"
VM1_MGMT_PORT = "7e3a9f1c-4444-4d2b-b6c8-000000000101"
K8S_SUBNET = "0c2f4b6d-2222-4e5f-8a9b-000000000001"
K8S_NET = "6a1b7c9e-1111-4c3d-9e8f-000000000001"
MGMT_NET = "6a1b7c9e-1111-4c3d-9e8f-000000000002"


class Api:
    """Raw Neutron requests against a running simulator, with a valid token."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self.token = sim.state.issue_token(sim.state.users[0], sim.state.projects[0]).value

    async def get(self, path: str, params: Params = ()) -> tuple[int, Any]:
        async with self.session.get(
            self.sim.url + path, params=list(params), headers={"X-Auth-Token": self.token}
        ) as resp:
            return resp.status, await resp.json()

    async def follow(self, href: str) -> tuple[int, Any]:
        """Follow a link as given (the simulator's links point at itself)."""
        parts = urlsplit(href)
        query = [(k, v) for k, vs in parse_qs(parts.query).items() for v in vs]
        return await self.get(parts.path, query)

    async def get_json(self, service: str, operation: str, url: str, params: Params) -> Any:
        """A JsonGetter for the client's network functions."""
        status, body = await self.get(urlsplit(url).path, params)
        assert status == 200, (operation, status, body)
        return body


ApiFactory = Callable[[Simulator], Api]


def links(body: dict[str, Any], collection: str) -> dict[str, dict[str, list[str]]]:
    """rel -> parsed query of that link."""
    return {lk["rel"]: parse_qs(urlsplit(lk["href"]).query) for lk in body.get(f"{collection}_links", [])}


def ids(body: dict[str, Any], collection: str) -> list[str]:
    return [item["id"] for item in body[collection]]


@pytest.fixture
async def api_factory() -> AsyncIterator[ApiFactory]:
    async with aiohttp.ClientSession() as session:

        def make(sim: Simulator) -> Api:
            return Api(sim, session)

        yield make


@pytest.fixture
async def api(sim: Simulator, api_factory: ApiFactory) -> Api:
    return api_factory(sim)


# ------------------------------------------------------------------------- 1. pagination_max_limit
@pytest.mark.parametrize("limit", [None, "0", "2", "5", "1000"])
async def test_neutron_pages_at_max_limit_without_or_beyond_limit(api_factory: ApiFactory, limit: str | None) -> None:
    async with running_simulator(neutron_max_limit=2) as sim:
        api = api_factory(sim)
        params = [] if limit is None else [("limit", limit)]
        status, body = await api.get("/v2.0/ports", params)
        assert status == 200
        all_ids = sorted(p.id for p in sim.state.ports.values())
        assert ids(body, "ports") == all_ids[:2]
        assert links(body, "ports")["next"]["marker"] == [all_ids[1]]


async def test_neutron_limit_below_max_wins(api_factory: ApiFactory) -> None:
    async with running_simulator(neutron_max_limit=3) as sim:
        status, body = await api_factory(sim).get("/v2.0/ports", [("limit", "1")])
        assert status == 200 and len(body["ports"]) == 1


async def test_neutron_max_limit_defaults_to_1000(api_factory: ApiFactory) -> None:
    state = SimState()
    state.add_project("your-project-id", "admin")
    state.add_user("admin", "admin")
    for i in range(1001):
        state.add_network(f"net-{i:04d}")
    async with running_simulator(state) as sim:
        api = api_factory(sim)
        status, body = await api.get("/v2.0/networks", [("fields", "id")])
        assert status == 200 and len(body["networks"]) == 1000
        status, rest = await api.follow(next(lk["href"] for lk in body["networks_links"] if lk["rel"] == "next"))
        assert status == 200 and len(rest["networks"]) == 1
        assert "next" not in links(rest, "networks")


async def test_neutron_next_links_cover_everything(api_factory: ApiFactory) -> None:
    async with running_simulator(neutron_max_limit=2) as sim:
        api = api_factory(sim)
        seen: list[str] = []
        status, body = await api.get("/v2.0/ports", [("fields", "id")])
        while True:
            assert status == 200
            seen += ids(body, "ports")
            nxt = [lk["href"] for lk in body.get("ports_links", []) if lk["rel"] == "next"]
            if not nxt:
                break
            status, body = await api.follow(nxt[0])
        assert seen == sorted(p.id for p in sim.state.ports.values())


@pytest.mark.parametrize("limit", ["-1", "two"])
async def test_neutron_bad_limit(api: Api, limit: str) -> None:
    status, body = await api.get("/v2.0/ports", [("limit", limit)])
    assert status == 400
    assert body["NeutronError"]["type"] == "BadRequest"
    assert f"Limit must be an integer 0 or greater and not '{limit}'" in body["NeutronError"]["message"]


def test_neutron_max_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="neutron_max_limit"):
        Simulator(neutron_max_limit=0)


async def test_client_follows_server_side_neutron_pages(api_factory: ApiFactory) -> None:
    """No client page size, pagination_max_limit=1: the client still sees every port, one page at a time."""
    async with running_simulator(neutron_max_limit=1) as sim:
        client = make_client()
        try:
            obs = await client.observe(sim.credentials(), ["test-vm-1", "test-vm-2", "test-vm-3"], "k8s-subnet")
        finally:
            await client.close()
        assert sorted(p.ip for p in obs.ports) == ["192.168.100.11", "192.168.100.12", "192.168.100.13"]
        assert sim.calls("network.ports") == 3  # 3 matching ports, one per page
        assert all(r.status == 200 for r in sim.request_log.for_endpoint("network.ports"))


# ------------------------------------------------------------------------------- 2. previous links
async def test_first_page_has_previous_link(api: Api) -> None:
    status, body = await api.get("/v2.0/ports", [("limit", "2")])
    assert status == 200
    rels = links(body, "ports")
    first = ids(body, "ports")[0]
    assert rels["previous"] == {"limit": ["2"], "marker": [first], "page_reverse": ["True"]}
    assert rels["next"] == {"limit": ["2"], "marker": [ids(body, "ports")[-1]]}


async def test_single_result_page_has_only_a_previous_link(api: Api) -> None:
    status, body = await api.get("/v2.0/subnets", [("name", "k8s-subnet")])  # no limit: max_limit pages it
    assert status == 200 and ids(body, "subnets") == [K8S_SUBNET]
    rels = links(body, "subnets")
    assert set(rels) == {"previous"}
    assert rels["previous"] == {"name": ["k8s-subnet"], "marker": [K8S_SUBNET], "page_reverse": ["True"]}


async def test_empty_page_previous_link_has_no_marker(api: Api) -> None:
    status, body = await api.get("/v2.0/subnets", [("name", "no-such-subnet")])
    assert status == 200 and body["subnets"] == []
    assert links(body, "subnets") == {"previous": {"name": ["no-such-subnet"], "page_reverse": ["True"]}}


async def test_previous_link_leads_back(api: Api) -> None:
    _, page1 = await api.get("/v2.0/ports", [("limit", "2")])
    _, page2 = await api.follow(next(lk["href"] for lk in page1["ports_links"] if lk["rel"] == "next"))
    status, back = await api.follow(next(lk["href"] for lk in page2["ports_links"] if lk["rel"] == "previous"))
    assert status == 200
    assert ids(back, "ports") == ids(page1, "ports")
    # A reverse page always links forward, and back again only when it is full.
    assert set(links(back, "ports")) == {"next", "previous"}
    assert links(back, "ports")["next"]["marker"] == [ids(page1, "ports")[-1]]
    assert "page_reverse" not in links(back, "ports")["next"]


async def test_reverse_page_at_the_start_has_no_previous_link(api: Api) -> None:
    _, page1 = await api.get("/v2.0/ports", [("limit", "2")])
    status, body = await api.get(
        "/v2.0/ports", [("limit", "2"), ("marker", ids(page1, "ports")[0]), ("page_reverse", "True")]
    )
    assert status == 200 and body["ports"] == []
    assert set(links(body, "ports")) == {"next"}


async def test_client_ignores_previous_links(sim: Simulator) -> None:
    client = make_client(page_size=1)
    try:
        obs = await client.observe(sim.credentials(), ["test-vm-1", "test-vm-2", "test-vm-3"], "k8s-subnet")
    finally:
        await client.close()
    assert sorted(p.ip for p in obs.ports) == ["192.168.100.11", "192.168.100.12", "192.168.100.13"]
    markers = [dict(r.query).get("marker") for r in sim.request_log.for_endpoint("network.ports")]
    assert len(markers) == 3 and markers[0] is None and len(set(markers[1:])) == 2
    assert all("page_reverse" not in dict(r.query) for r in sim.request_log.for_endpoint("network.ports"))


# --------------------------------------------------------------------------------- 3. unknown filters
@pytest.mark.parametrize("collection", ["ports", "subnets", "networks"])
async def test_unknown_filter_is_rejected(api: Api, collection: str) -> None:
    status, body = await api.get(f"/v2.0/{collection}", [("bogus", "1")])
    assert status == 400
    assert body == {
        "NeutronError": {
            "type": "HTTPBadRequest",
            "message": "['bogus'] is invalid attribute for filtering",
            "detail": "",
        }
    }


async def test_several_unknown_filters_are_listed_once_in_order(api: Api) -> None:
    status, body = await api.get(
        "/v2.0/ports", [("bogus", "1"), ("name", "x"), ("other", "2"), ("bogus", "3"), ("limit", "1")]
    )
    assert status == 400
    assert body["NeutronError"]["message"] == "['bogus', 'other'] is invalid attribute for filtering"


@pytest.mark.parametrize(
    ("collection", "allowed"),
    [("ports", PORT_FILTERS), ("subnets", SUBNET_FILTERS), ("networks", NETWORK_FILTERS)],
)
async def test_known_filters_and_paging_params_are_accepted(api: Api, collection: str, allowed: frozenset[str]) -> None:
    expected = {
        "ports": {"id", "name", "network_id", "mac_address", "device_id", "device_owner", "fixed_ips", "status"},
        "subnets": {"id", "name", "network_id", "cidr", "ip_version", "enable_dhcp", "gateway_ip"},
        "networks": {"id", "name", "status", "shared", "mtu"},
    }[collection] | {"tenant_id", "project_id"}
    assert expected <= allowed
    # A well-formed value for each (Neutron converts booleans and fixed_ips, and refuses what does not convert).
    valid = {"admin_state_up": "true", "enable_dhcp": "true", "shared": "false", "fixed_ips": "subnet_id=x"}
    for key in sorted(allowed):
        status, body = await api.get(f"/v2.0/{collection}", [(key, valid.get(key, "x"))])
        assert status == 200, (key, body)
    paging = [("limit", "1"), ("page_reverse", "False"), ("sort_key", "id"), ("sort_dir", "asc"), ("fields", "id")]
    status, body = await api.get(f"/v2.0/{collection}", paging)
    assert status == 200 and len(body[collection]) == 1


async def test_client_queries_pass_filter_validation(api: Api) -> None:
    subnet = await find_subnet(api.get_json, api.sim.url + "/v2.0", "k8s-subnet")
    assert subnet.id == K8S_SUBNET
    ports = await list_ports(api.get_json, api.sim.url + "/v2.0", subnet.id, [VM1], page_size=1)
    assert [p.id for p in ports] == [VM1_K8S_PORT]
    assert await get_network_mtu(api.get_json, api.sim.url + "/v2.0", subnet.network_id) == 1450
    assert all(r.status == 200 for r in api.sim.request_log.records if r.endpoint.startswith("network."))


async def test_boolean_filters(api: Api) -> None:
    _, body = await api.get("/v2.0/subnets", [("enable_dhcp", "True")])
    assert len(body["subnets"]) == 2
    _, body = await api.get("/v2.0/subnets", [("enable_dhcp", "false")])
    assert body["subnets"] == []


# --------------------------------------------------------------------------------------- 4. port status
async def test_port_status_follows_binding(api: Api) -> None:
    _, body = await api.get("/v2.0/ports", [("fields", "id"), ("fields", "status")])
    status = {p["id"]: p["status"] for p in body["ports"]}
    assert status[ORPHAN_PORT] == "DOWN"
    assert status[VM1_K8S_PORT] == status[VM1_MGMT_PORT] == "ACTIVE"
    assert {s for pid, s in status.items() if pid != ORPHAN_PORT} == {"ACTIVE"}

    _, body = await api.get("/v2.0/ports", [("status", "DOWN"), ("fields", "id")])
    assert ids(body, "ports") == [ORPHAN_PORT]

    api.sim.state.remove_server(VM1)  # ports are detached, not deleted
    query = [("id", VM1_K8S_PORT), ("id", VM1_MGMT_PORT), ("fields", "id"), ("fields", "status")]
    _, body = await api.get("/v2.0/ports", query)
    assert {p["id"]: p["status"] for p in body["ports"]} == {VM1_K8S_PORT: "DOWN", VM1_MGMT_PORT: "DOWN"}

    sub = api.sim.state.find_subnet("k8s-subnet")
    server = api.sim.state.add_server("test-vm-new")
    bound = api.sim.state.add_port(sub.id, "192.168.100.50", server.id)
    unbound = api.sim.state.add_port(sub.id, "192.168.100.51")
    _, body = await api.get(
        "/v2.0/ports", [("id", bound.id), ("id", unbound.id), ("fields", "id"), ("fields", "status")]
    )
    assert {p["id"]: p["status"] for p in body["ports"]} == {bound.id: "ACTIVE", unbound.id: "DOWN"}


# ----------------------------------------------------------------------------------- 5. network listing
async def test_list_networks(api: Api) -> None:
    status, body = await api.get("/v2.0/networks")
    assert status == 200
    assert ids(body, "networks") == [K8S_NET, MGMT_NET]
    k8s = body["networks"][0]
    assert k8s["name"] == "k8s-net" and k8s["mtu"] == 1450 and k8s["subnets"] == [K8S_SUBNET]
    assert k8s["status"] == "ACTIVE" and k8s["shared"] is False

    _, body = await api.get("/v2.0/networks", [("name", "mgmt-net"), ("fields", "id"), ("fields", "mtu")])
    assert body["networks"] == [{"id": MGMT_NET, "mtu": 1500}]
    _, body = await api.get("/v2.0/networks", [("id", K8S_NET), ("id", MGMT_NET), ("name", "k8s-net")])
    assert ids(body, "networks") == [K8S_NET]

    _, page1 = await api.get("/v2.0/networks", [("limit", "1")])
    assert ids(page1, "networks") == [K8S_NET]
    assert links(page1, "networks")["next"]["marker"] == [K8S_NET]
    _, page2 = await api.follow(next(lk["href"] for lk in page1["networks_links"] if lk["rel"] == "next"))
    assert ids(page2, "networks") == [MGMT_NET]
    assert set(links(page2, "networks")) == {"previous"}

    status, body = await api.get("/v2.0/networks", [("limit", "1"), ("marker", "no-such-network")])
    assert status == 404 and body["NeutronError"]["type"] == "NetworkNotFound"


async def test_list_networks_shares_the_fault_key_and_needs_a_token(sim: Simulator, api: Api) -> None:
    sim.faults.fail_next("network.networks", 1, status=503)
    status, body = await api.get("/v2.0/networks")
    assert status == 503 and body["NeutronError"]["type"] == "HTTPServiceUnavailable"
    api.token = "not-a-token"
    status, _ = await api.get("/v2.0/networks")
    assert status == 401
    assert [r.status for r in sim.request_log.for_endpoint("network.networks")] == [503, 401]
