"""Where credentials may be sent: the allow-list (`OPENSTACK_ALLOWED_URLS`) and plain-HTTP warnings."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from multinic_ctrl.openstack import EndpointNotAllowed, EndpointPolicy, InvalidPattern, OpenStackClient
from multinic_ctrl.openstack.http import HttpSettings

from .scripted import Reply, Scripted, scripted_server
from .test_edge_cases import SERVERS, TOKENS, creds_for, script_neutron, script_nova_versions, token_reply


@pytest.mark.parametrize(
    ("patterns", "url", "allowed"),
    [
        ("https://keystone.example.com", "https://keystone.example.com:5000/v3", True),
        ("https://keystone.example.com", "https://KEYSTONE.example.com./v3", True),
        ("https://keystone.example.com", "http://keystone.example.com/v3", False),
        ("https://keystone.example.com", "https://keystone.example.com.evil.net/v3", False),
        ("https://keystone.example.com", "https://evil.net/keystone.example.com", False),
        ("https://keystone.example.com:5000", "https://keystone.example.com:5001/v3", False),
        ("https://keystone.example.com:443", "https://keystone.example.com/v3", True),
        ("https://*.cloud.example", "https://nova.cloud.example:8774/v2.1", True),
        ("https://*.cloud.example", "https://a.b.cloud.example", True),
        ("https://*.cloud.example", "https://cloud.example", False),
        ("https://*.cloud.example", "https://evilcloud.example", False),
        ("https://*", "https://anything.at.all:1234", True),
        ("https://*", "http://anything.at.all", False),
        ("https://api.example/identity", "https://api.example/identity/v3", True),
        ("https://api.example/identity", "https://api.example/identity-evil/v3", False),
        ("https://api.example/identity", "https://api.example/", False),
        ("http://10.0.0.5:5000", "http://10.0.0.5:5000/v3", True),
        ("http://10.0.0.5:5000", "http://10.0.0.05:5000/v3", False),
        ("https://[fd00::1]:5000", "https://[fd00:0::1]:5000/v3", True),
        ("https://a.example, https://b.example", "https://b.example/v3", True),
        ("https://a.example", "https://user@a.example/v3", False),
        ("https://a.example", "ftp://a.example", False),
    ],
)
def test_structural_matching(patterns: str, url: str, allowed: bool) -> None:
    policy = EndpointPolicy.parse(patterns)
    if allowed:
        policy.check(url, "spec.credentials.authURL")
    else:
        with pytest.raises(EndpointNotAllowed):
            policy.check(url, "spec.credentials.authURL")


def test_no_allow_list_allows_any_http_url() -> None:
    policy = EndpointPolicy.parse("")
    assert not policy.restricted
    policy.check("http://169.254.169.254/latest", "x")


def test_refusal_message_names_field_and_host_but_not_path_or_query() -> None:
    policy = EndpointPolicy.parse("https://good.example")
    with pytest.raises(EndpointNotAllowed) as caught:
        policy.check("https://evil.example:8443/steal?token=abc", "spec.credentials.authURL")
    message = str(caught.value)
    assert "spec.credentials.authURL" in message and "https://evil.example:8443" in message
    assert "steal" not in message and "token" not in message and "OPENSTACK_ALLOWED_URLS" in message


@pytest.mark.parametrize(
    "pattern", ["keystone.example.com", "ftp://x", "https://", "https://a*.example", "https://x:99999", "https://u@x"]
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidPattern):
        EndpointPolicy.parse(pattern)


def test_plaintext_is_reported_unless_allowed_explicitly() -> None:
    urls = ["http://ks:5000/v3", "https://nova:8774/v2.1", "http://neutron:9696"]
    assert EndpointPolicy.parse("").plaintext(urls) == ["http://ks:5000", "http://neutron:9696"]
    explicit = EndpointPolicy.parse("http://ks:5000, https://*, http://neutron:9696")
    assert explicit.plaintext(urls) == []


@pytest.fixture
async def server() -> AsyncIterator[Scripted]:
    async with scripted_server() as s:
        script_nova_versions(s)
        yield s


async def test_a_refused_auth_url_gets_no_request_at_all(server: Scripted) -> None:
    server.add("POST", TOKENS, token_reply())
    client = OpenStackClient(HttpSettings(), policy=EndpointPolicy.parse("https://keystone.example.com"))
    try:
        with pytest.raises(EndpointNotAllowed, match="authURL"):
            await client.observe(creds_for(server), ["vm"], "k8s-subnet")
    finally:
        await client.close()
    assert server.seen == [], "nothing may be sent - not even the password - to an endpoint outside the list"


async def test_endpoint_overrides_are_checked_before_authenticating(server: Scripted) -> None:
    server.add("POST", TOKENS, token_reply())
    client = OpenStackClient(HttpSettings(), policy=EndpointPolicy.parse(server.url))
    try:
        creds = creds_for(server, network_endpoint="http://10.96.0.1:443")
        with pytest.raises(EndpointNotAllowed, match="networkEndpoint"):
            await client.observe(creds, ["vm"], "k8s-subnet")
    finally:
        await client.close()
    assert server.seen == []


async def test_catalog_endpoints_are_checked_before_the_token_is_sent(server: Scripted) -> None:
    catalog = [
        {"type": "compute", "endpoints": [{"interface": "public", "url": server.url + "/v2.1"}]},
        {"type": "network", "endpoints": [{"interface": "public", "url": "http://metadata.internal:9696"}]},
    ]
    server.add("POST", TOKENS, token_reply(catalog))
    client = OpenStackClient(HttpSettings(), policy=EndpointPolicy.parse(server.url))
    try:
        creds = creds_for(server, network_endpoint=None, compute_endpoint=None)
        with pytest.raises(EndpointNotAllowed, match="network endpoint"):
            await client.observe(creds, ["vm"], "k8s-subnet")
    finally:
        await client.close()
    assert [p for _, p, _ in server.seen] == [TOKENS], "only Keystone (allowed) was asked"


async def test_plain_http_is_reported_on_the_observation(server: Scripted) -> None:
    server.add("POST", TOKENS, token_reply())
    server.add("GET", SERVERS, Reply(body={"servers": []}))
    script_neutron(server)
    for patterns, expected in (("", (server.url,)), (server.url, ())):
        client = OpenStackClient(HttpSettings(), policy=EndpointPolicy.parse(patterns))
        try:
            obs = await client.observe(creds_for(server), ["vm"], "k8s-subnet")
        finally:
            await client.close()
        assert obs.plaintext_endpoints == expected


async def test_error_bodies_never_reach_the_message(server: Scripted) -> None:
    server.add("POST", TOKENS, Reply(400, {"error": {"message": "<script>attacker text</script>"}}))
    client = OpenStackClient(HttpSettings())
    try:
        with pytest.raises(Exception) as caught:
            await client.observe(creds_for(server), ["vm"], "k8s-subnet")
    finally:
        await client.close()
    assert "HTTP 400" in str(caught.value) and "attacker" not in str(caught.value)
