"""Edge cases the simulator does not produce, against a scripted loopback server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from multinic_ctrl.openstack import (
    Credentials,
    EndpointNotFound,
    OpenStackRequestError,
    PermissionDenied,
)
from multinic_ctrl.openstack.http import error_detail, parse_retry_after

from .conftest import SleepRecorder, make_client
from .scripted import Reply, Scripted, scripted_server

TOKENS = "/v3/auth/tokens"
SERVERS = "/v2.1/servers/detail"
NOVA_VERSION = "/v2.1/"
ALL_SERVERS = "/v2.1/servers"  # the unfiltered listing that shows servers of unreachable cells (2.69)


def nova_version_reply(maximum: str = "2.96", minimum: str = "2.1") -> Reply:
    return Reply(body={"version": {"id": "v2.1", "status": "CURRENT", "version": maximum, "min_version": minimum}})


def script_nova_versions(s: Scripted) -> None:
    """A modern Nova: its version document, and an unfiltered listing (2.69) with no unreachable cell."""
    s.add("GET", NOVA_VERSION, nova_version_reply())
    s.add("GET", ALL_SERVERS, Reply(body={"servers": []}, headers={"OpenStack-API-Version": "compute 2.69"}))


def token_reply(catalog: list[dict[str, Any]] | None = None, header: bool = True) -> Reply:
    now = datetime.now(UTC)
    body = {
        "token": {
            "expires_at": (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
            "issued_at": now.isoformat().replace("+00:00", "Z"),
            "project": {"id": "p"},
            "catalog": catalog or [],
        }
    }
    return Reply(201, body, {"X-Subject-Token": "tok"} if header else {})


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    async with scripted_server() as s:
        script_nova_versions(s)
        yield s


def creds_for(s: Scripted, **kw: Any) -> Credentials:
    values: dict[str, Any] = {
        "auth_url": s.url,
        "username": "admin",
        "password": "pw",
        "project_id": "p",
        "compute_endpoint": s.url,
        "network_endpoint": s.url,
    }
    values.update(kw)
    return Credentials(**values)


def script_neutron(s: Scripted, mtu: Any = 9000) -> None:
    subnet = {"id": "s1", "name": "k8s-subnet", "cidr": "10.0.0.0/24", "network_id": "n1"}
    s.add("GET", "/v2.0/subnets", Reply(body={"subnets": [subnet]}))
    s.add("GET", "/v2.0/networks/n1", Reply(body={"network": {"id": "n1", "mtu": mtu}}))
    s.add("GET", "/v2.0/ports", Reply(body={"ports": []}))


async def test_retry_after_http_date(server: Scripted) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server.add("POST", TOKENS, Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": later}), token_reply())
    server.add("GET", SERVERS, Reply(body={"servers": []}))
    script_neutron(server)
    sleeps = SleepRecorder()
    client = make_client(sleeps)
    try:
        obs = await client.observe(creds_for(server), ["vm"], "k8s-subnet")
    finally:
        await client.close()
    assert obs.missing_vms == ("vm",) and obs.subnet.mtu == 9000
    assert len(sleeps.delays) == 1 and 25 <= sleeps.delays[0] <= 30


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


async def test_missing_subject_token_is_an_error(server: Scripted) -> None:
    server.add("POST", TOKENS, token_reply(header=False))
    client = make_client()
    try:
        with pytest.raises(OpenStackRequestError, match="X-Subject-Token"):
            await client.observe(creds_for(server), ["vm"], "k8s-subnet")
    finally:
        await client.close()


async def test_catalog_without_network_endpoint(server: Scripted) -> None:
    catalog = [{"type": "compute", "endpoints": [{"interface": "public", "url": server.url, "region_id": "R"}]}]
    server.add("POST", TOKENS, token_reply(catalog))
    creds = creds_for(server, auth_url=server.url + "/v3/", compute_endpoint="", network_endpoint="")
    client = make_client()
    try:
        with pytest.raises(EndpointNotFound, match="no 'network' endpoint with interface 'public'"):
            await client.observe(creds, ["vm"], "k8s-subnet")
    finally:
        await client.close()
    assert server.seen[0][1] == TOKENS  # authURL with /v3/ was not doubled


async def test_next_link_on_foreign_host_is_followed_on_our_endpoint(server: Scripted) -> None:
    server.add("POST", TOKENS, token_reply())
    page1 = {
        "servers": [{"id": "a", "name": "node-1", "status": "ACTIVE"}],
        "servers_links": [{"rel": "next", "href": "http://internal-nova:8774/v2.1/servers/detail?marker=a"}],
    }
    page2 = {"servers": [{"id": "b", "name": "node-2", "status": "BUILD"}]}
    server.add("GET", SERVERS, Reply(body=page1), Reply(body=page2))
    script_neutron(server)
    client = make_client(page_size=1)
    try:
        obs = await client.observe(creds_for(server), ["node-1", "node-2"], "k8s-subnet")
    finally:
        await client.close()
    assert [(s.name, s.status) for s in obs.servers] == [("node-1", "ACTIVE"), ("node-2", "BUILD")]
    nova = [q for m, p, q in server.seen if p == SERVERS]
    assert nova[1] == (("name", "^node-"), ("limit", "1"), ("marker", "a"))


async def test_forbidden_is_permission_denied(server: Scripted) -> None:
    server.add("POST", TOKENS, token_reply())
    server.add("GET", SERVERS, Reply(body={"servers": []}))
    denied = {"NeutronError": {"type": "PolicyNotAuthorized", "message": "rule:get_subnet denied", "detail": ""}}
    server.add("GET", "/v2.0/subnets", Reply(403, denied))
    client = make_client()
    try:
        with pytest.raises(PermissionDenied, match="HTTP 403") as caught:
            await client.observe(creds_for(server), ["vm"], "k8s-subnet")
        # The endpoint's own words never reach the message (it ends up in status, and the endpoint may be
        # anyone's): only the status code and ours.
        assert "rule:get_subnet" not in str(caught.value)
    finally:
        await client.close()


async def test_missing_mtu_and_non_json_body(server: Scripted) -> None:
    server.add("POST", TOKENS, token_reply())
    server.add("GET", SERVERS, Reply(body="<html>proxy error</html>"))
    script_neutron(server, mtu=None)
    client = make_client()
    try:
        with pytest.raises(OpenStackRequestError, match=r"no 'servers' list|no integer 'mtu'"):
            await client.observe(creds_for(server), ["vm"], "k8s-subnet")
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"code": 401, "title": "Unauthorized", "message": "auth needed"}}, "auth needed"),
        ({"NeutronError": {"type": "X", "message": "neutron says", "detail": ""}}, "neutron says"),
        ({"itemNotFound": {"code": 404, "message": "Instance x not found."}}, "Instance x not found."),
        ({"message": "bare"}, "bare"),
        (None, "no error message in response"),
        ("text", "no error message in response"),
    ],
)
def test_error_detail_shapes(body: object, expected: str) -> None:
    assert error_detail(body) == expected
