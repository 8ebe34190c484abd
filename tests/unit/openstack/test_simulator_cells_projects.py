"""The simulator behaves like real Nova (34) and Neutron (29) for microversions, down cells and project ownership.

References: nova/api/openstack/compute/servers.py (`_is_cell_down_supported`), nova/compute/api.py (`get_all`,
`_generate_minimal_construct_for_down_cells`), nova/api/openstack/compute/views/servers.py (partial records),
nova/api/openstack/wsgi.py (microversion headers, 400/406); neutron_lib/db/model_query.py (the `shared`
filter), neutron_lib/api/definitions/subnet.py (`shared` is filter-only on subnets). The same facts are
asserted against the real testbed in tests/openstack_real/test_projects_and_microversions.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
import pytest

from tests.fakes.openstack import SimState, Simulator, running_simulator

Params = Sequence[tuple[str, str]]
OTHER = "0ther0ther0ther0ther0ther0ther00"


class Raw:
    """Raw requests with a token of a chosen user/project."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession, user: int = 0, project: int = 0) -> None:
        self.sim, self.session = sim, session
        self.token = sim.state.issue_token(sim.state.users[user], sim.state.projects[project]).value

    async def get(
        self, path: str, params: Params = (), headers: Mapping[str, str] | None = None, token: bool = True
    ) -> tuple[int, Any, Mapping[str, str]]:
        sent = dict(headers or {}) | ({"X-Auth-Token": self.token} if token else {})
        async with self.session.get(self.sim.url + path, params=list(params), headers=sent) as resp:
            return resp.status, await resp.json(), resp.headers


def layout() -> SimState:
    state = SimState()
    state.add_project("your-project-id", "admin")
    state.add_project(OTHER, "other")
    state.add_user("admin", "admin")  # admin role
    state.add_user("member", "pw", projects=["your-project-id"])
    mine = state.add_network("k8s-net", 1450)
    theirs = state.add_network("k8s-net", 1450, project_id=OTHER)
    common = state.add_network("common-net", project_id=OTHER, shared=True)
    state.add_subnet("k8s-subnet", mine.id, "10.0.0.0/24", id="s-mine")
    state.add_subnet("k8s-subnet", theirs.id, "10.1.0.0/24", id="s-theirs")
    state.add_subnet("common-subnet", common.id, "10.2.0.0/24", id="s-common")
    for name in ("vm-a", "vm-b", "vm-c"):
        server = state.add_server(name, id=f"mine-{name}")
        state.add_port("s-mine", f"10.0.0.{len(state.ports) + 10}", server.id)
    twin = state.add_server("vm-a", id="theirs-vm-a", project_id=OTHER)
    state.add_port("s-theirs", "10.1.0.10", twin.id)
    return state


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(layout()) as s:
        yield s


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# ----------------------------------------------------------------------------------------- nova versions
@pytest.mark.parametrize("path", ["/v2.1", "/v2.1/"])
async def test_version_document_needs_no_token(sim: Simulator, session: aiohttp.ClientSession, path: str) -> None:
    status, body, _ = await Raw(sim, session).get(path, token=False)
    assert status == 200
    version = body["version"]
    assert (version["id"], version["status"], version["min_version"], version["version"]) == (
        "v2.1",
        "CURRENT",
        "2.1",
        "2.96",
    )
    assert version["links"][0] == {"rel": "self", "href": f"{sim.url}/v2.1/"}


async def test_max_microversion_is_configurable(session: aiohttp.ClientSession) -> None:
    async with running_simulator(nova_max_microversion="2.60") as sim:
        _, body, _ = await Raw(sim, session).get("/v2.1/")
        assert body["version"]["version"] == "2.60"
    async with running_simulator(nova_max_microversion=None) as sim:
        _, body, _ = await Raw(sim, session).get("/v2.1/")
        assert (body["version"]["version"], body["version"]["min_version"]) == ("", "")
        status, _, headers = await Raw(sim, session).get(
            "/v2.1/servers", headers={"OpenStack-API-Version": "compute 2.9"}
        )
        assert status == 200 and "OpenStack-API-Version" not in headers
    with pytest.raises(ValueError, match="nova_max_microversion"):
        Simulator(nova_max_microversion="latest")


@pytest.mark.parametrize(
    ("headers", "served"),
    [
        ({}, "2.1"),  # none asked: the minimum
        ({"OpenStack-API-Version": "compute 2.69"}, "2.69"),
        ({"X-OpenStack-Nova-API-Version": "2.70"}, "2.70"),
        ({"OpenStack-API-Version": "compute 2.69", "X-OpenStack-Nova-API-Version": "2.70"}, "2.69"),
        ({"OpenStack-API-Version": "compute latest"}, "2.96"),
        ({"OpenStack-API-Version": "volume 3.0"}, "2.1"),  # not ours: the default
    ],
)
async def test_microversion_is_echoed(
    sim: Simulator, session: aiohttp.ClientSession, headers: dict[str, str], served: str
) -> None:
    status, _, got = await Raw(sim, session).get("/v2.1/servers", headers=headers)
    assert status == 200
    assert got["OpenStack-API-Version"] == f"compute {served}"
    assert got["X-OpenStack-Nova-API-Version"] == served


@pytest.mark.parametrize(("asked", "status"), [("2.97", 406), ("2.0", 406), ("3.1", 406), ("2.x", 400), ("02.1", 400)])
async def test_unsupported_or_malformed_microversion(
    sim: Simulator, session: aiohttp.ClientSession, asked: str, status: int
) -> None:
    got, body, headers = await Raw(sim, session).get(
        "/v2.1/servers", headers={"OpenStack-API-Version": f"compute {asked}"}
    )
    assert got == status
    if status == 406:
        assert body["computeFault"]["message"] == (
            f"Version {asked} is not supported by the API. Minimum is 2.1 and maximum is 2.96."
        )
        assert headers["OpenStack-API-Version"] == f"compute {asked}"
    else:
        assert body["badRequest"]["message"].startswith(f"API Version String {asked} is of invalid format")
        assert "OpenStack-API-Version" not in headers


# -------------------------------------------------------------------------------------------- down cells
V269 = {"OpenStack-API-Version": "compute 2.69"}


async def test_down_cell_servers_are_skipped_below_2_69(sim: Simulator, session: aiohttp.ClientSession) -> None:
    sim.state.set_cell_down("mine-vm-b")
    _, body, _ = await Raw(sim, session).get("/v2.1/servers", headers={"OpenStack-API-Version": "compute 2.68"})
    assert [s["id"] for s in body["servers"]] == ["mine-vm-c", "mine-vm-a"]


@pytest.mark.parametrize(
    "params", [[("name", "vm")], [("limit", "10")], [("sort_key", "name")], [("status", "ACTIVE")]]
)
async def test_any_filter_or_paging_turns_partial_records_off(
    sim: Simulator, session: aiohttp.ClientSession, params: list[tuple[str, str]]
) -> None:
    sim.state.set_cell_down("mine-vm-b")
    _, body, _ = await Raw(sim, session).get("/v2.1/servers/detail", params, V269)
    assert "mine-vm-b" not in [s["id"] for s in body["servers"]]


async def test_unfiltered_listing_at_2_69_returns_partial_records(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    sim.state.set_cell_down("mine-vm-b")
    raw = Raw(sim, session)
    _, short, _ = await raw.get("/v2.1/servers", headers=V269)
    assert [s["id"] for s in short["servers"]] == ["mine-vm-b", "mine-vm-c", "mine-vm-a"]  # partial ones first
    assert set(short["servers"][0]) == {"id", "status", "links"} and short["servers"][0]["status"] == "UNKNOWN"
    assert set(short["servers"][1]) == {"id", "name", "links"}
    _, detail, _ = await raw.get("/v2.1/servers/detail", headers={"OpenStack-API-Version": "compute 2.96"})
    partial = detail["servers"][0]
    assert set(partial) == {"id", "status", "tenant_id", "created", "links"}
    assert (partial["status"], partial["tenant_id"]) == ("UNKNOWN", "your-project-id")


async def test_reachable_servers_fill_the_page_before_partial_records(session: aiohttp.ClientSession) -> None:
    async with running_simulator(layout(), nova_max_limit=2) as sim:
        sim.state.set_cell_down("mine-vm-a")
        _, body, _ = await Raw(sim, session).get("/v2.1/servers", headers=V269)
        assert [s["id"] for s in body["servers"]] == ["mine-vm-c", "mine-vm-b"]  # no room left for the partial one
        assert body["servers_links"][0]["rel"] == "next"
        sim.state.set_cell_down("mine-vm-b")
        _, body, _ = await Raw(sim, session).get("/v2.1/servers", headers=V269)
        assert [s.get("status") for s in body["servers"]] == ["UNKNOWN", None]
        assert "servers_links" in body  # the page is full again


# --------------------------------------------------------------------------------------------- projects
async def test_nova_lists_the_tokens_project_only(sim: Simulator, session: aiohttp.ClientSession) -> None:
    _, body, _ = await Raw(sim, session).get("/v2.1/servers/detail", [("name", "^vm-a$")])
    assert [(s["id"], s["tenant_id"]) for s in body["servers"]] == [("mine-vm-a", "your-project-id")]
    _, body, _ = await Raw(sim, session, project=1).get("/v2.1/servers/detail", [("name", "^vm-a$")])
    assert [(s["id"], s["tenant_id"]) for s in body["servers"]] == [("theirs-vm-a", OTHER)]


async def test_neutron_admin_sees_every_project(sim: Simulator, session: aiohttp.ClientSession) -> None:
    _, body, _ = await Raw(sim, session).get("/v2.0/subnets", [("name", "k8s-subnet")])
    assert sorted((s["id"], s["project_id"], s["tenant_id"]) for s in body["subnets"]) == [
        ("s-mine", "your-project-id", "your-project-id"),
        ("s-theirs", OTHER, OTHER),
    ]
    _, body, _ = await Raw(sim, session).get("/v2.0/subnets", [("name", "k8s-subnet"), ("project_id", OTHER)])
    assert [s["id"] for s in body["subnets"]] == ["s-theirs"]
    _, body, _ = await Raw(sim, session).get("/v2.0/ports", [("device_id", "theirs-vm-a")])
    assert [p["project_id"] for p in body["ports"]] == [OTHER]


async def test_neutron_member_sees_own_and_shared(sim: Simulator, session: aiohttp.ClientSession) -> None:
    member = Raw(sim, session, user=1)
    _, body, _ = await member.get("/v2.0/subnets")
    assert sorted(s["id"] for s in body["subnets"]) == ["s-common", "s-mine"]
    _, body, _ = await member.get("/v2.0/networks")
    assert sorted((n["name"], n["shared"]) for n in body["networks"]) == [("common-net", True), ("k8s-net", False)]
    _, body, _ = await member.get("/v2.0/ports", [("device_id", "theirs-vm-a")])
    assert body["ports"] == []
    theirs = next(n for n in sim.state.networks.values() if n.project_id == OTHER and not n.shared_with)
    status, body, _ = await member.get(f"/v2.0/networks/{theirs.id}")
    assert status == 404 and body["NeutronError"]["type"] == "NetworkNotFound"


async def test_shared_filter_is_evaluated_for_the_tokens_project(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    rbac = sim.state.add_network("rbac-net", project_id=OTHER, shared=[OTHER])
    sim.state.add_subnet("rbac-subnet", rbac.id, "10.3.0.0/24", id="s-rbac")
    _, body, _ = await Raw(sim, session).get("/v2.0/subnets", [("shared", "True")])
    assert [s["id"] for s in body["subnets"]] == ["s-common"]  # s-rbac is shared with OTHER only
    _, body, _ = await Raw(sim, session, project=1).get("/v2.0/subnets", [("shared", "True")])
    assert sorted(s["id"] for s in body["subnets"]) == ["s-common", "s-rbac"]
    _, body, _ = await Raw(sim, session).get("/v2.0/subnets", [("shared", "False"), ("name", "k8s-subnet")])
    assert sorted(s["id"] for s in body["subnets"]) == ["s-mine", "s-theirs"]


async def test_subnets_never_show_shared(sim: Simulator, session: aiohttp.ClientSession) -> None:
    """neutron-lib: subnet `shared` is is_visible False (a filter only), even when asked for in fields."""
    _, body, _ = await Raw(sim, session).get("/v2.0/subnets")
    assert all("shared" not in s for s in body["subnets"])
    _, body, _ = await Raw(sim, session).get("/v2.0/subnets", [("fields", "id"), ("fields", "shared")])
    assert all(set(s) == {"id"} for s in body["subnets"])


def test_seed_schema_places_resources_in_projects() -> None:
    state = SimState.from_seed(
        {
            "projects": [{"id": "p1", "name": "one"}, {"id": "p2", "name": "two"}],
            "users": [{"name": "admin", "password": "x"}, {"name": "u", "password": "y", "admin": True}],
            "networks": [
                {"name": "n", "subnets": [{"name": "s", "cidr": "10.0.0.0/24"}]},
                {"name": "n", "project": "two", "shared": ["one"], "subnets": [{"name": "s", "cidr": "10.1.0.0/24"}]},
            ],
            "servers": [
                {"name": "vm", "ports": [{"subnet": "s", "ip": "10.0.0.5"}]},
                {"name": "vm", "project": "p2", "down_cell": True, "ports": [{"subnet": "s", "ip": "10.1.0.5"}]},
            ],
        }
    )
    assert [u.admin for u in state.users] == [True, True]
    one, two = state.find_server("vm", "one"), state.find_server("vm", "two")
    assert (one.project_id, one.down_cell, two.project_id, two.down_cell) == ("p1", False, "p2", True)
    assert {p.project_id: p.fixed_ips[0].ip_address for p in state.ports.values()} == {
        "p1": "10.0.0.5",
        "p2": "10.1.0.5",
    }
    assert state.find_subnet("s", "two").cidr == "10.1.0.0/24"
    shared = next(n for n in state.networks.values() if n.project_id == "p2")
    assert shared.shared_with == ["p1"] and shared.shared_to("p1") and not shared.shared_to("p3")
