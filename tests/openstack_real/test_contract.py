"""OpenStack client contract: identical assertions against real Keystone/Nova/Neutron and the simulator."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from multinic_ctrl.openstack import AuthenticationError, Observation, SubnetNotFound
from multinic_ctrl.openstack.auth import TokenManager
from multinic_ctrl.openstack.endpoints import resolve_endpoints

from .conftest import (
    K8S_CIDR,
    K8S_IPS,
    ORPHAN_IP,
    OTHER_CIDR,
    OTHER_IPS,
    PAGE,
    Backend,
    RecordingTransport,
    make_client,
)

pytestmark = pytest.mark.openstack_real

VMS = ["test-vm-1", "test-vm-2", "test-vm-3"]
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def ips_by_server(obs: Observation) -> dict[str, list[str]]:
    names = {s.id: s.name for s in obs.servers}
    out: dict[str, list[str]] = {}
    for p in obs.ports:
        out.setdefault(names[p.device_id], []).append(p.ip)
    return {k: sorted(v) for k, v in out.items()}


async def observe(
    backend: Backend, vms: list[str], subnet: str = "k8s-subnet", page_size: int | None = None
) -> tuple[Observation, RecordingTransport]:
    client, transport = make_client(page_size)
    try:
        return await client.observe(backend.creds, vms, subnet), transport
    finally:
        await client.close()


# ------------------------------------------------------------------------------------------ auth / catalog
async def test_auth_token_and_catalog(backend: Backend) -> None:
    transport = RecordingTransport(make_client()[1].settings)
    tokens = TokenManager(transport)
    try:
        token = await tokens.get(backend.creds)
        assert token.project_id == backend.creds.project_id
        assert token.expires_at > datetime.now(UTC)
        types = {ep.service_type for ep in token.catalog if ep.interface == "public"}
        assert {"identity", "compute", "network"} <= types
        endpoints = resolve_endpoints(backend.creds, token.catalog)
        assert endpoints.compute.endswith("/v2.1")
        assert endpoints.network.endswith("/v2.0")
        # The catalog's endpoints answer with this token.
        for service, url in (("compute", endpoints.compute + "/servers"), ("network", endpoints.network + "/subnets")):
            resp = await transport.request(
                service=service, operation="probe", method="GET", url=url, headers={"X-Auth-Token": token.value}
            )
            assert resp.status == 200, (service, resp.status, resp.body)
    finally:
        await transport.close()


async def test_wrong_password_is_an_authentication_error(backend: Backend) -> None:
    from dataclasses import replace

    client, transport = make_client()
    try:
        with pytest.raises(AuthenticationError, match="rejected the credentials"):
            await client.observe(replace(backend.creds, password="not-the-password"), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert transport.count("authenticate", 401) == 1


async def test_service_rejects_unknown_token_with_401(backend: Backend) -> None:
    client, transport = make_client()
    try:
        token = await client.tokens.get(backend.creds)
        endpoints = resolve_endpoints(backend.creds, token.catalog)
        for service, url in (("compute", endpoints.compute + "/servers"), ("network", endpoints.network + "/ports")):
            resp = await transport.request(
                service=service, operation="probe", method="GET", url=url, headers={"X-Auth-Token": "gAAAAbogus"}
            )
            assert resp.status == 401
            assert resp.body["error"]["code"] == 401
    finally:
        await client.close()


# --------------------------------------------------------------------------------------------- exact names
async def test_nova_name_filter_is_a_partial_regex_match(backend: Backend) -> None:
    """The fact the client is built around: name=test-vm-1 also returns the look-alikes."""
    client, transport = make_client()
    try:
        token = await client.tokens.get(backend.creds)
        compute = resolve_endpoints(backend.creds, token.catalog).compute
        names: list[str] = []
        params: list[tuple[str, str]] = [("name", "test-vm-1"), ("limit", "100")]
        for _ in range(10):
            resp = await transport.request(
                service="compute",
                operation="probe",
                method="GET",
                url=compute + "/servers",
                params=params,
                headers={"X-Auth-Token": token.value},
            )
            assert resp.status == 200
            names += [s["name"] for s in resp.body["servers"]]
            nxt = [lk["href"] for lk in resp.body.get("servers_links", []) if lk["rel"] == "next"]
            if not nxt or not resp.body["servers"]:
                break
            marker = re.search(r"marker=([0-9a-f-]+)", nxt[0])
            assert marker
            params = [("name", "test-vm-1"), ("limit", "100"), ("marker", marker.group(1))]
        assert sorted(names) == ["test-vm-1", "test-vm-1.backup", "test-vm-10"]
        # `|` is escaped on MySQL-backed Nova: an alternation matches nothing.
        resp = await transport.request(
            service="compute",
            operation="probe",
            method="GET",
            url=compute + "/servers",
            params=[("name", "^(test-vm-1|test-vm-2)$")],
            headers={"X-Auth-Token": token.value},
        )
        assert resp.status == 200 and resp.body["servers"] == []
        # Case-insensitive, like MariaDB's default collation.
        resp = await transport.request(
            service="compute",
            operation="probe",
            method="GET",
            url=compute + "/servers",
            params=[("name", "^TEST-VM-1$")],
            headers={"X-Auth-Token": token.value},
        )
        assert [s["name"] for s in resp.body["servers"]] == ["test-vm-1"]
    finally:
        await client.close()


async def test_exact_names_exclude_look_alikes(backend: Backend) -> None:
    obs, _ = await observe(backend, ["test-vm-1"])
    assert [s.name for s in obs.servers] == ["test-vm-1"]
    assert obs.missing_vms == ()
    assert ips_by_server(obs) == {"test-vm-1": K8S_IPS["test-vm-1"]}

    obs, _ = await observe(backend, ["test-vm-10", "test-vm-1.backup"])
    assert [s.name for s in obs.servers] == ["test-vm-10", "test-vm-1.backup"]
    assert ips_by_server(obs) == {n: K8S_IPS[n] for n in ("test-vm-10", "test-vm-1.backup")}


async def test_missing_vm_is_reported_not_an_error(backend: Backend) -> None:
    obs, _ = await observe(backend, ["test-vm-1", "test-vm-99", "no-such-vm"])
    assert [s.name for s in obs.servers] == ["test-vm-1"]
    assert obs.missing_vms == ("test-vm-99", "no-such-vm")


async def test_servers_are_active(backend: Backend) -> None:
    obs, _ = await observe(backend, [*VMS, "test-vm-10", "test-vm-1.backup"])
    assert {s.name: s.status for s in obs.servers} == dict.fromkeys([*VMS, "test-vm-10", "test-vm-1.backup"], "ACTIVE")


# ------------------------------------------------------------------------------------- subnets and ports
async def test_subnet_lookup(backend: Backend) -> None:
    obs, _ = await observe(backend, VMS)
    assert obs.subnet.name == "k8s-subnet"
    assert obs.subnet.cidr == K8S_CIDR
    other, _ = await observe(backend, VMS, "other-subnet")
    assert other.subnet.cidr == OTHER_CIDR
    assert other.subnet.network_id != obs.subnet.network_id


async def test_unknown_subnet_raises(backend: Backend) -> None:
    client, _ = make_client()
    try:
        with pytest.raises(SubnetNotFound):
            await client.observe(backend.creds, VMS, "no-such-subnet")
    finally:
        await client.close()


async def test_ports_by_device_and_subnet(backend: Backend) -> None:
    obs, _ = await observe(backend, VMS)
    assert ips_by_server(obs) == {n: K8S_IPS[n] for n in VMS}
    assert ORPHAN_IP not in {p.ip for p in obs.ports}  # a port whose device_id is no server
    for p in obs.ports:
        assert MAC.match(p.mac), p.mac
        assert p.network_id == obs.subnet.network_id
    assert len({p.mac for p in obs.ports}) == len(obs.ports)
    # Ports come in server order, then by port ID.
    order = [s.id for s in obs.servers]
    assert [order.index(p.device_id) for p in obs.ports] == sorted(order.index(p.device_id) for p in obs.ports)

    other, _ = await observe(backend, VMS, "other-subnet")
    assert ips_by_server(other) == OTHER_IPS  # only test-vm-2 has a NIC there


async def test_mtu(backend: Backend) -> None:
    obs, _ = await observe(backend, VMS)
    assert obs.subnet.mtu == 1450


# ------------------------------------------------------------------------------------------- pagination
async def test_pagination_with_small_pages(backend: Backend) -> None:
    """page_size=2: several pages of servers and ports, the same observation as without paging."""
    paged, transport = await observe(backend, [*VMS, "test-vm-10", "test-vm-1.backup"], page_size=PAGE)
    assert transport.count("list_servers") > 1
    assert transport.count("list_ports") > 1
    assert all(("limit", str(PAGE)) in c.params for c in transport.calls if c.operation == "list_ports")
    assert ips_by_server(paged) == K8S_IPS


async def test_server_side_page_limits(backend: Backend) -> None:
    """No client page size: Nova's max_limit (2 on both backends) still forces paging; Neutron's
    pagination_max_limit pages the real service even without `limit`. The client follows both."""
    obs, transport = await observe(backend, [*VMS, "test-vm-10", "test-vm-1.backup"])
    assert ips_by_server(obs) == K8S_IPS
    assert transport.count("list_servers") > 1
    ports_pages = transport.count("list_ports")
    if backend.neutron_max_limit is not None:
        assert ports_pages > 1
    assert len(obs.ports) == sum(len(v) for v in K8S_IPS.values())


# ----------------------------------------------------------------------------------------------- tokens
async def test_revoked_token_is_replaced(backend: Backend) -> None:
    client, transport = make_client()
    try:
        old = await client.tokens.get(backend.creds)
        await backend.revoke(old.value)
        obs = await client.observe(backend.creds, VMS, "k8s-subnet")
        new = await client.tokens.get(backend.creds)
    finally:
        await client.close()
    assert new.value != old.value
    assert ips_by_server(obs) == {n: K8S_IPS[n] for n in VMS}
    assert any(c.status == 401 for c in transport.calls if c.service in ("compute", "network"))
    assert transport.count("authenticate") >= 2


async def test_expired_token_is_renewed(backend: Backend) -> None:
    """Past the token's lifetime (on our clock) the next call authenticates again and the new token works."""
    now = [0.0]
    transport = RecordingTransport(make_client()[1].settings)
    tokens = TokenManager(transport, clock=lambda: now[0])
    try:
        first = await tokens.get(backend.creds)
        assert await tokens.get(backend.creds) is first
        lifetime = (first.expires_at - datetime.now(UTC)).total_seconds()
        assert 60 < lifetime <= 3600 + 5
        now[0] = first.deadline + 1
        second = await tokens.get(backend.creds)
        assert second.value != first.value
        assert transport.count("authenticate") == 2
        network = resolve_endpoints(backend.creds, second.catalog).network
        resp = await transport.request(
            service="network",
            operation="probe",
            method="GET",
            url=network + "/subnets",
            # An admin token sees every project's k8s-subnet (seed.py): ask for the scoped project's.
            params=[("name", "k8s-subnet"), ("project_id", str(second.project_id))],
            headers={"X-Auth-Token": second.value},
        )
        assert resp.status == 200
        assert [s["cidr"] for s in resp.body["subnets"]] == [K8S_CIDR]
    finally:
        await transport.close()
