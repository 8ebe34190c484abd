"""Partial answers from Nova must not delete rows (issue 11, item 2).

Nova leaves servers of an unreachable cell out of every filtered listing. From microversion 2.69 an unfiltered,
unpaged listing shows them as partial records (id, status UNKNOWN, no name). The observation must carry that
("present, state unknown"), the rows of such VMs must be kept, and the status must say so; where Nova cannot
show partial records (below 2.69, a full page, a response that does not echo 2.69) a missing VM's absence is
unproven, and its rows are kept as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from multinic_ctrl.controller.desired import desired_rows, rows_to_keep
from multinic_ctrl.controller.status import synced_conditions, vm_report
from multinic_ctrl.db import InterfaceRow
from multinic_ctrl.db.repository import KeepRows
from multinic_ctrl.openstack import OpenStackClient, OpenStackRequestError
from tests.fakes.openstack import Simulator, running_simulator

from .conftest import make_client
from .scripted import Reply, Scripted, scripted_server
from .test_edge_cases import (
    ALL_SERVERS,
    NOVA_VERSION,
    SERVERS,
    TOKENS,
    creds_for,
    nova_version_reply,
    script_neutron,
    token_reply,
)

VMS = ["test-vm-1", "test-vm-2", "test-vm-3"]
VM2 = "1d5e0c6a-3333-4b7a-8c9d-000000000002"  # default seed


@pytest.fixture
async def old_nova() -> AsyncIterator[Simulator]:
    """A Nova whose maximum microversion (Queens) predates partial records."""
    async with running_simulator(nova_max_microversion="2.60") as s:
        yield s


def condition(obs: Any, kind: str) -> Any:
    return next(c for c in synced_conditions(obs) if c.type == kind)


def row(port: str, node_id: str, node: str, subnet: str = "0c2f4b6d-2222-4e5f-8a9b-000000000001") -> InterfaceRow:
    return InterfaceRow(port, subnet, "fa:16:3e:00:01:02", "192.168.100.12", 1450, node_id, node)


# ---------------------------------------------------------------------------------- a cell that does not answer
async def test_server_in_a_down_cell_is_present_with_state_unknown(sim: Simulator, client: OpenStackClient) -> None:
    sim.state.set_cell_down(VM2)
    obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")

    assert [s.name for s in obs.servers] == ["test-vm-1", "test-vm-3"]  # the name queries skip it, as in Nova
    assert obs.missing_vms == ("test-vm-2",)
    assert obs.unknown_servers == (VM2,)  # ... the unfiltered 2.69 listing shows it as a partial record
    assert obs.listing_complete and obs.compute_microversion == "2.69"
    assert obs.incomplete_vms == ("test-vm-2",) and obs.state_unknown

    # The rows of test-vm-2's server are kept; another server under that name (re-created VM) would not be.
    keep = rows_to_keep(obs)
    assert keep == KeepRows(node_names=frozenset({"test-vm-2"}), node_ids=frozenset({VM2}))
    assert keep.keeps(row("p2", VM2, "test-vm-2"))
    assert not keep.keeps(row("p2", "some-other-server", "test-vm-2"))
    assert not keep.keeps(row("p9", VM2, "test-vm-9"))  # a VM no longer requested is the user's decision
    assert {i.node_name for i in desired_rows(obs).interfaces} == {"test-vm-1", "test-vm-3"}

    # The status says so: the VM's entry and the condition (Unknown, not False).
    entry = next(e for e in vm_report(obs, {}) if e["name"] == "test-vm-2")
    assert entry["status"] == "UNKNOWN" and "state unknown" in entry["message"] and "rows are kept" in entry["message"]
    found = condition(obs, "AllVMsFound")
    assert (found.status, found.reason) == (None, "VMStateUnknown")
    assert "test-vm-2" in found.message and "does not answer" in found.message
    assert "kept" in condition(obs, "Ready").message

    # Calls: the name queries carry no microversion (Nova drops partial records for filtered listings anyway),
    # the one unfiltered listing does.
    nova = sim.request_log.for_endpoint("compute.servers")
    assert [(dict(r.query).get("name") is not None, r.microversion) for r in nova] == [
        (True, None),
        (False, "compute 2.69"),
    ]
    assert nova[1].query == () and nova[1].path == "/v2.1/servers"
    assert sim.calls("compute.versions") == 1


async def test_the_cell_comes_back(sim: Simulator, client: OpenStackClient) -> None:
    sim.state.set_cell_down(VM2)
    await client.observe(sim.credentials(), VMS, "k8s-subnet")
    sim.state.set_cell_down(VM2, down=False)
    obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
    assert [s.name for s in obs.servers] == VMS
    assert obs.unknown_servers == () and obs.incomplete_vms == () and not obs.state_unknown
    assert condition(obs, "AllVMsFound").status is True
    assert sim.calls("compute.versions") == 1  # cached for the endpoint


async def test_a_vm_really_gone_while_another_cell_is_down(sim: Simulator, client: OpenStackClient) -> None:
    """Missing names cannot be told apart from unnamed partial records: all stay "unknown", but only rows of
    the unreachable servers are kept (KeepRows.node_ids)."""
    sim.state.set_cell_down(sim.state.find_server("test-vm-10").id)
    vm3 = sim.state.find_server("test-vm-3")
    sim.state.remove_server(vm3.id)
    obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
    assert obs.missing_vms == ("test-vm-3",) and obs.incomplete_vms == ("test-vm-3",)
    keep = rows_to_keep(obs)
    assert not keep.keeps(row("p3", vm3.id, "test-vm-3"))  # test-vm-3's server is not among the unreachable ones


async def test_missing_vm_with_every_cell_up_is_gone(sim: Simulator, client: OpenStackClient) -> None:
    vm3 = sim.state.find_server("test-vm-3")
    sim.state.remove_server(vm3.id)
    obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
    assert obs.missing_vms == ("test-vm-3",)
    assert obs.listing_complete and obs.unknown_servers == () and obs.incomplete_vms == ()
    assert rows_to_keep(obs) == KeepRows() and not KeepRows()
    entry = next(e for e in vm_report(obs, {}) if e["name"] == "test-vm-3")
    assert "status" not in entry and entry["message"] == "no server with this name in the project"
    assert (condition(obs, "AllVMsFound").status, condition(obs, "AllVMsFound").reason) == (False, "VMsMissing")


async def test_every_vm_found_costs_no_extra_call(sim: Simulator, client: OpenStackClient) -> None:
    obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
    assert obs.compute_microversion is None and obs.listing_complete
    assert sim.calls("compute.versions") == 0 and sim.calls("compute.servers") == 1


# ------------------------------------------------------------------------- answers that prove nothing
async def test_without_2_69_missing_vms_are_unproven(old_nova: Simulator) -> None:
    old_nova.state.set_cell_down(VM2)
    client = make_client()
    try:
        obs = await client.observe(old_nova.credentials(), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert obs.missing_vms == ("test-vm-2",)
    assert not obs.listing_complete and obs.compute_microversion is None
    assert obs.unknown_servers == () and obs.incomplete_vms == ("test-vm-2",)
    assert rows_to_keep(obs) == KeepRows(node_names=frozenset({"test-vm-2"}))  # any server under that name
    entry = next(e for e in vm_report(obs, {}) if e["name"] == "test-vm-2")
    assert entry["status"] == "UNKNOWN" and "microversion 2.69" in entry["message"]
    assert condition(obs, "AllVMsFound").status is None
    # Nothing to ask once the endpoint offers no 2.69: the version document only.
    assert old_nova.calls("compute.versions") == 1
    assert [r.microversion for r in old_nova.request_log.for_endpoint("compute.servers")] == [None]


async def test_a_full_first_page_is_inconclusive() -> None:
    """Nova fills the page with reachable servers first: with more servers than max_limit, no partial record
    can show up, so a missing VM is not proven gone."""
    async with running_simulator(nova_max_limit=3) as sim:
        sim.state.set_cell_down(VM2)
        client = make_client()
        try:
            obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
        finally:
            await client.close()
    assert obs.compute_microversion == "2.69"
    assert obs.unknown_servers == () and not obs.listing_complete and obs.incomplete_vms == ("test-vm-2",)


async def test_partial_records_are_read_from_the_short_listing(sim: Simulator, client: OpenStackClient) -> None:
    for name in ("test-vm-1", "test-vm-2", "test-vm-10"):
        sim.state.set_cell_down(sim.state.find_server(name).id)
    obs = await client.observe(sim.credentials(), ["test-vm-1", "test-vm-2"], "k8s-subnet")
    assert obs.servers == () and obs.ports == ()
    assert set(obs.unknown_servers) == {sim.state.find_server(n).id for n in ("test-vm-1", "test-vm-2", "test-vm-10")}
    assert obs.incomplete_vms == ("test-vm-1", "test-vm-2")


# ------------------------------------------------------------------------------ scripted Nova edge cases
@pytest.fixture
async def nova() -> AsyncIterator[Scripted]:
    async with scripted_server() as s:
        s.add("POST", TOKENS, token_reply())
        s.add("GET", SERVERS, Reply(body={"servers": []}))
        script_neutron(s)
        yield s


async def observe_missing(s: Scripted) -> Any:
    client = make_client()
    try:
        return await client.observe(creds_for(s), ["vm"], "k8s-subnet")
    finally:
        await client.close()


async def test_a_response_that_does_not_echo_2_69_proves_nothing(nova: Scripted) -> None:
    """A proxy that strips the microversion header gets us Nova's default (2.1), which skips down cells."""
    nova.add("GET", NOVA_VERSION, nova_version_reply())
    nova.add("GET", ALL_SERVERS, Reply(body={"servers": [{"id": "a", "name": "other", "links": []}]}))
    obs = await observe_missing(nova)
    assert obs.compute_microversion == "2.69" and not obs.listing_complete and obs.incomplete_vms == ("vm",)


async def test_partial_record_from_a_scripted_nova(nova: Scripted) -> None:
    nova.add("GET", NOVA_VERSION, nova_version_reply("2.104"))
    listing = {"servers": [{"id": "p-1", "status": "UNKNOWN", "links": []}, {"id": "b", "name": "x", "links": []}]}
    nova.add("GET", ALL_SERVERS, Reply(body=listing, headers={"OpenStack-API-Version": "compute 2.69"}))
    obs = await observe_missing(nova)
    assert obs.unknown_servers == ("p-1",) and obs.listing_complete and obs.incomplete_vms == ("vm",)
    probe = [q for m, p, q in nova.seen if p == ALL_SERVERS]
    assert probe == [()]


@pytest.mark.parametrize("status", [404, 403, 400])
async def test_no_version_document_means_no_microversion(nova: Scripted, status: int) -> None:
    nova.add("GET", NOVA_VERSION, Reply(status, {"message": "nope"}))
    obs = await observe_missing(nova)
    assert obs.compute_microversion is None and not obs.listing_complete and obs.incomplete_vms == ("vm",)
    assert not [p for m, p, q in nova.seen if p == ALL_SERVERS]


async def test_unreadable_version_document_means_no_microversion(nova: Scripted) -> None:
    nova.add("GET", NOVA_VERSION, Reply(body="<html>welcome</html>"))
    obs = await observe_missing(nova)
    assert obs.compute_microversion is None and obs.incomplete_vms == ("vm",)


async def test_406_renegotiates_on_the_next_observation(nova: Scripted) -> None:
    """Nova was downgraded behind the same URL: the 406 fails this observation (no rows change), and the next
    one reads the version document again."""
    nova.add("GET", NOVA_VERSION, nova_version_reply("2.96"), nova_version_reply("2.60"))
    refusal = {"computeFault": {"code": 406, "message": "Version 2.69 is not supported by the API."}}
    nova.add("GET", ALL_SERVERS, Reply(406, refusal))
    client = make_client()
    try:
        with pytest.raises(OpenStackRequestError, match="HTTP 406"):
            await client.observe(creds_for(nova), ["vm"], "k8s-subnet")
        obs = await client.observe(creds_for(nova), ["vm"], "k8s-subnet")
    finally:
        await client.close()
    assert obs.compute_microversion is None and obs.incomplete_vms == ("vm",)
    assert [p for m, p, q in nova.seen].count(NOVA_VERSION) == 2


async def test_legacy_project_in_the_compute_url(nova: Scripted) -> None:
    """`…/v2.1/<project>` endpoints: the version document is `…/v2.1/`, the listings stay under the project."""
    nova.add("GET", NOVA_VERSION, nova_version_reply())
    nova.add("GET", "/v2.1/p/servers/detail", Reply(body={"servers": []}))
    nova.add("GET", "/v2.1/p/servers", Reply(body={"servers": []}, headers={"OpenStack-API-Version": "compute 2.69"}))
    client = make_client()
    try:
        obs = await client.observe(creds_for(nova, compute_endpoint=nova.url + "/v2.1/p"), ["vm"], "k8s-subnet")
    finally:
        await client.close()
    assert obs.listing_complete and obs.incomplete_vms == () and obs.missing_vms == ("vm",)
    assert [p for m, p, q in nova.seen if p.startswith("/v2.1")] == [
        "/v2.1/p/servers/detail",
        NOVA_VERSION,
        "/v2.1/p/servers",
    ]
