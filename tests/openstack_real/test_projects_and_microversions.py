"""Project scoping and compute microversions: identical assertions against real Keystone/Nova/Neutron and the
simulator (issue 11, items 2 and 3).

Layout (scripts/openstack_testbed/seed.py, mirrored in conftest.simulator_seed): the admin project, a second
project `multinic-other` with the same network, subnet and server names, and `multinic-shared`, which owns a
network shared with every project. The admin user is admin in all three, so Neutron shows it every project's
subnets: the client must pick by project.
"""

from __future__ import annotations

import pytest

from multinic_ctrl.controller.desired import desired_rows, rows_to_keep
from multinic_ctrl.controller.status import synced_conditions, vm_report
from multinic_ctrl.db.repository import KeepRows
from multinic_ctrl.openstack import AmbiguousSubnet, Credentials, Observation, SubnetNotFound
from multinic_ctrl.openstack.endpoints import resolve_endpoints

from .conftest import (
    CELLS_PROJECT,
    K8S_CIDR,
    K8S_IPS,
    OTHER_K8S_CIDR,
    OTHER_PROJECT,
    OTHER_PROJECT_IPS,
    PAGE,
    SHARED_PROJECT,
    SHARED_SUBNETS,
    Backend,
    RecordingTransport,
    make_client,
)

pytestmark = pytest.mark.openstack_real

VMS = ["test-vm-1", "test-vm-2", "test-vm-3"]


async def observe(
    creds: Credentials, vms: list[str], subnet: str = "k8s-subnet"
) -> tuple[Observation, RecordingTransport]:
    client, transport = make_client()
    try:
        return await client.observe(creds, vms, subnet), transport
    finally:
        await client.close()


def ips_by_server(obs: Observation) -> dict[str, list[str]]:
    names = {s.id: s.name for s in obs.servers}
    out: dict[str, list[str]] = {}
    for p in obs.ports:
        out.setdefault(names[p.device_id], []).append(p.ip)
    return {k: sorted(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------- item 3: projects
async def test_admin_scoped_to_a_project_gets_that_projects_subnet_servers_and_rows(backend: Backend) -> None:
    """Same network, subnet and server names in two projects; admin credentials scoped to the first."""
    mine, transport = await observe(backend.creds, VMS)
    theirs, _ = await observe(backend.scoped_to(OTHER_PROJECT), ["test-vm-1", "test-vm-2"])

    # The right subnet: the scoped project's own, found by the first (project-filtered) query alone.
    assert (mine.subnet.name, mine.subnet.cidr) == ("k8s-subnet", K8S_CIDR)
    assert (theirs.subnet.name, theirs.subnet.cidr) == ("k8s-subnet", OTHER_K8S_CIDR)
    assert mine.subnet.id != theirs.subnet.id and mine.subnet.network_id != theirs.subnet.network_id
    subnet_calls = [c for c in transport.calls if c.operation == "list_subnets"]
    assert len(subnet_calls) == 1 and ("project_id", str(backend.creds.project_id)) in subnet_calls[0].params

    # The right servers: Nova lists the scoped project only (no all_tenants), so the twins never collide.
    assert [s.name for s in mine.servers] == VMS and mine.missing_vms == ()
    assert [s.name for s in theirs.servers] == ["test-vm-1", "test-vm-2"]
    assert not {s.id for s in mine.servers} & {s.id for s in theirs.servers}
    assert ips_by_server(mine) == {n: K8S_IPS[n] for n in VMS}
    assert ips_by_server(theirs) == OTHER_PROJECT_IPS

    # The right rows: every row of one config is its project's subnet, servers and addresses.
    for obs, cidr_prefix in ((mine, "192.168.100."), (theirs, "192.168.110.")):
        rows = desired_rows(obs)
        assert [s.subnet_id for s in rows.subnets] == [obs.subnet.id]
        assert {n.node_id for n in rows.nodes} == {s.id for s in obs.servers}
        assert rows.interfaces and all(
            i.subnet_id == obs.subnet.id and i.node_id in {s.id for s in obs.servers} and i.address
            for i in rows.interfaces
        )
        assert all(str(i.address).startswith(cidr_prefix) for i in rows.interfaces)
        assert rows_to_keep(obs) == KeepRows()  # every VM found: nothing to keep beyond the desired rows


async def test_owned_subnet_beats_a_shared_one_of_the_same_name(backend: Backend) -> None:
    """multinic-shared's k8s-subnet is shared with every project; each project's own k8s-subnet still wins."""
    shared_k8s = dict((n, c) for n, c in SHARED_SUBNETS if n == "k8s-subnet")["k8s-subnet"]
    for creds, cidr in (
        (backend.creds, K8S_CIDR),
        (backend.scoped_to(OTHER_PROJECT), OTHER_K8S_CIDR),
        (backend.scoped_to(SHARED_PROJECT), shared_k8s),
    ):
        obs, _ = await observe(creds, [])
        assert obs.subnet.cidr == cidr


async def test_a_unique_shared_subnet_is_used_when_the_project_owns_none(backend: Backend) -> None:
    obs, transport = await observe(backend.scoped_to(OTHER_PROJECT), ["test-vm-1"], "shared-subnet")
    assert (obs.subnet.name, obs.subnet.cidr) == ("shared-subnet", dict(SHARED_SUBNETS)["shared-subnet"])
    assert obs.subnet.mtu == 1450  # the shared network's, readable from the scoped project
    calls = [c.params for c in transport.calls if c.operation == "list_subnets"]
    assert len(calls) == 2  # owned (none), then shared
    assert ("shared", "True") in calls[1] and not any(k == "project_id" for k, _ in calls[1])
    assert obs.ports == ()  # test-vm-1 of multinic-other has no port there


async def test_two_shared_subnets_of_one_name_are_ambiguous(backend: Backend) -> None:
    twins = sorted(c for n, c in SHARED_SUBNETS if n == "twin-subnet")
    client, _ = make_client(page_size=1)  # the candidates arrive on different pages
    try:
        with pytest.raises(AmbiguousSubnet) as caught:
            await client.observe(backend.creds, VMS, "twin-subnet")
        token = await client.tokens.get(backend.scoped_to(SHARED_PROJECT))
    finally:
        await client.close()
    assert len(caught.value.candidates) == 2
    assert {c[2] for c in caught.value.candidates} == {token.project_id}  # both owned by multinic-shared
    assert "shared with project" in str(caught.value)
    assert len(twins) == 2


async def test_another_projects_private_subnet_is_not_found(backend: Backend) -> None:
    """The admin can see other-subnet (admin project, not shared), but multinic-shared cannot use it."""
    client, _ = make_client()
    try:
        with pytest.raises(SubnetNotFound, match="owned or shared with it"):
            await client.observe(backend.scoped_to(SHARED_PROJECT), [], "other-subnet")
    finally:
        await client.close()


# ------------------------------------------------------------------------------------ item 2: microversions
async def test_microversion_is_negotiated_once_per_endpoint_and_only_when_needed(backend: Backend) -> None:
    client, transport = make_client()
    try:
        found = await client.observe(backend.creds, VMS, "k8s-subnet")
        assert transport.count("get_version") == 0  # every VM found: nothing to prove, no extra call
        first = await client.observe(backend.creds, ["test-vm-1", "no-such-vm"], "k8s-subnet")
        second = await client.observe(backend.creds, ["no-such-vm"], "k8s-subnet")
    finally:
        await client.close()
    assert found.compute_microversion is None and found.listing_complete
    assert transport.count("get_version", 200) == 1  # the version document, once for the endpoint
    assert transport.count("list_servers_cells", 200) == 2  # the unfiltered 2.69 listing, per observation
    for obs in (first, second):
        assert obs.compute_microversion == "2.69"
        assert obs.missing_vms == ("no-such-vm",)
        # The admin project has more servers than one Nova page (max_limit 2): reachable servers fill the page
        # before any partial record would, so this answer cannot prove the VM gone.
        assert not obs.listing_complete
        assert obs.incomplete_vms == ("no-such-vm",)
        assert rows_to_keep(obs) == KeepRows(node_names=frozenset({"no-such-vm"}))
    assert len(K8S_IPS) > PAGE


async def test_a_whole_answer_at_2_69_proves_a_vm_gone(backend: Backend) -> None:
    """multinic-shared has no server: Nova's 2.69 answer fits on a page and echoes 2.69, so absence is proof."""
    obs, transport = await observe(backend.scoped_to(SHARED_PROJECT), ["ghost-vm"], "shared-subnet")
    assert obs.compute_microversion == "2.69"
    assert obs.missing_vms == ("ghost-vm",)
    assert obs.listing_complete and obs.unknown_servers == () and obs.incomplete_vms == ()
    assert rows_to_keep(obs) == KeepRows()
    (probe,) = [c for c in transport.calls if c.operation == "list_servers_cells"]
    assert probe.params == [] and probe.status == 200  # no filter, no paging: the only form with partial records


async def test_nova_microversion_contract(backend: Backend) -> None:
    """The facts the negotiation relies on, asked raw: the version document, the echo, 406 out of range."""
    client, transport = make_client()
    try:
        token = await client.tokens.get(backend.creds)
        compute = resolve_endpoints(backend.creds, token.catalog).compute
        doc = await transport.request(service="compute", operation="probe", method="GET", url=compute + "/")
        assert doc.status == 200  # no token needed
        version = doc.body["version"]
        assert version["id"] == "v2.1" and version["min_version"] == "2.1"
        assert tuple(int(x) for x in version["version"].split(".")) >= (2, 69)
        headers = {"X-Auth-Token": token.value}
        for asked in ({"OpenStack-API-Version": "compute 2.69"}, {"X-OpenStack-Nova-API-Version": "2.69"}):
            resp = await transport.request(
                service="compute", operation="probe", method="GET", url=compute + "/servers", headers=headers | asked
            )
            assert resp.status == 200
            assert resp.headers["OpenStack-API-Version"] == "compute 2.69"
            assert resp.headers["X-OpenStack-Nova-API-Version"] == "2.69"
        resp = await transport.request(
            service="compute",
            operation="probe",
            method="GET",
            url=compute + "/servers",
            headers=headers | {"OpenStack-API-Version": "compute 2.9999"},
        )
        assert resp.status == 406
        assert "not supported by the API" in resp.body["computeFault"]["message"]
    finally:
        await client.close()


async def test_a_server_in_an_unreachable_cell_is_present_with_state_unknown(backend: Backend) -> None:
    """A Nova cell that does not answer: its server is left out of the name queries (at any microversion) and
    shows up only in the unfiltered 2.69 listing, as a partial record. The observation says "present, state
    unknown", the rows of the VM are kept, the status says so."""
    creds = backend.scoped_to(CELLS_PROJECT)
    before, _ = await observe(creds, ["cell-vm"], "shared-subnet")
    assert before.missing_vms == ("cell-vm",) and before.incomplete_vms == () and before.listing_complete

    async with backend.down_cell() as server_id:
        obs, transport = await observe(creds, ["cell-vm"], "shared-subnet")
        client, raw = make_client()
        try:
            token = await client.tokens.get(creds)
            compute = resolve_endpoints(creds, token.catalog).compute
            listings = {}
            for label, params, version in (
                ("unfiltered 2.69", [], "2.69"),
                ("unfiltered 2.68", [], "2.68"),
                ("name filter 2.69", [("name", "^cell-vm$")], "2.69"),
                ("limit 2.69", [("limit", "10")], "2.69"),
            ):
                resp = await raw.request(
                    service="compute",
                    operation="probe",
                    method="GET",
                    url=compute + "/servers",
                    params=params,
                    headers={"X-Auth-Token": token.value, "OpenStack-API-Version": f"compute {version}"},
                )
                assert resp.status == 200, (label, resp.status)
                listings[label] = resp.body["servers"]
        finally:
            await client.close()

    # Nova's rule, on both backends: partial records only for the unfiltered, unpaged listing at >= 2.69.
    (partial,) = listings["unfiltered 2.69"]
    assert partial["id"] == server_id and partial["status"] == "UNKNOWN" and "name" not in partial
    assert listings["unfiltered 2.68"] == listings["name filter 2.69"] == listings["limit 2.69"] == []

    assert obs.missing_vms == ("cell-vm",)
    assert obs.unknown_servers == (server_id,)
    assert obs.listing_complete and obs.compute_microversion == "2.69"
    assert obs.incomplete_vms == ("cell-vm",)
    assert rows_to_keep(obs) == KeepRows(node_names=frozenset({"cell-vm"}), node_ids=frozenset({server_id}))
    (entry,) = vm_report(obs, {})
    assert entry["status"] == "UNKNOWN" and "rows are kept" in entry["message"]
    found = next(c for c in synced_conditions(obs) if c.type == "AllVMsFound")
    assert (found.status, found.reason) == (None, "VMStateUnknown")
    assert transport.count("list_servers_cells", 200) == 1

    after, _ = await observe(creds, ["cell-vm"], "shared-subnet")
    assert after.unknown_servers == () and after.incomplete_vms == ()  # the cell is gone again
