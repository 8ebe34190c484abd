"""Compute microversion negotiation (pure) and its per-endpoint cache."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from multinic_ctrl.openstack import OpenStackUnavailable
from multinic_ctrl.openstack.microversion import (
    PARTIAL_SERVERS,
    Microversion,
    MicroversionCache,
    VersionRange,
    echoed,
    negotiate,
    parse_version_document,
    version_document_url,
)

V = Microversion.parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2.69", Microversion(2, 69)), (" 2.104 ", Microversion(2, 104)), ("2.1", Microversion(2, 1))],
)
def test_parse(text: str, expected: Microversion) -> None:
    assert Microversion.parse(text) == expected
    assert str(expected) == text.strip()


@pytest.mark.parametrize("text", ["", "latest", "2", "2.x", "v2.1", None, 2.69])
def test_parse_rejects(text: Any) -> None:
    assert Microversion.parse(text) is None


def test_ordering_is_numeric_not_textual() -> None:
    assert V("2.100") > V("2.69") > V("2.9")  # "2.100" < "2.69" as strings


def test_headers_use_both_spellings() -> None:
    assert PARTIAL_SERVERS.headers() == {
        "OpenStack-API-Version": "compute 2.69",
        "X-OpenStack-Nova-API-Version": "2.69",
    }


@pytest.mark.parametrize(
    ("compute", "document"),
    [
        ("http://nova:8774/v2.1", "http://nova:8774/v2.1/"),
        ("https://cloud.example/compute/v2.1", "https://cloud.example/compute/v2.1/"),
        ("http://nova:8774/v2.1/0123456789abcdef", "http://nova:8774/v2.1/"),  # legacy: project in the URL
        ("http://nova:8774/v2/0123456789abcdef", "http://nova:8774/v2/"),
        ("http://nova:8774/v2.1/", "http://nova:8774/v2.1/"),
    ],
)
def test_version_document_url(compute: str, document: str) -> None:
    assert version_document_url(compute) == document


def test_parse_version_show_document() -> None:
    body = {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.104", "min_version": "2.1"}}
    assert parse_version_document(body) == VersionRange(V("2.1"), V("2.104"))


def test_parse_root_versions_document_prefers_the_current_one() -> None:
    body = {
        "versions": [
            {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": ""},
            {"id": "v2.1", "status": "CURRENT", "version": "2.96", "min_version": "2.1"},
        ]
    }
    assert parse_version_document(body) == VersionRange(V("2.1"), V("2.96"))


def test_parse_legacy_v2_document_has_no_microversions() -> None:
    body = {"version": {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": ""}}
    assert parse_version_document(body) == VersionRange(None, None)
    assert negotiate(parse_version_document(body)) is None


@pytest.mark.parametrize("body", [None, "<html>", {}, {"version": "2.69"}, {"versions": ["x"]}])
def test_parse_garbage(body: Any) -> None:
    assert parse_version_document(body) is None


@pytest.mark.parametrize(
    ("minimum", "maximum", "chosen"),
    [
        ("2.1", "2.104", "2.69"),  # the oldest version with partial records, not the newest offered
        ("2.1", "2.69", "2.69"),
        ("2.1", "2.68", None),  # Rocky and older: no partial records
        ("2.1", "2.60", None),
        ("2.75", "2.100", "2.75"),  # a future Nova that raised its minimum: the minimum still has them
        ("2.90", "2.80", None),  # nonsense range
        (None, "2.96", "2.69"),
        (None, None, None),
    ],
)
def test_negotiate(minimum: str | None, maximum: str | None, chosen: str | None) -> None:
    offered = VersionRange(V(minimum) if minimum else None, V(maximum) if maximum else None)
    assert negotiate(offered) == (V(chosen) if chosen else None)


def test_negotiate_without_a_document() -> None:
    assert negotiate(None) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"OpenStack-API-Version": "compute 2.69"}, "2.69"),
        ({"OpenStack-API-Version": "Compute 2.70", "X-OpenStack-Nova-API-Version": "2.70"}, "2.70"),
        ({"X-OpenStack-Nova-API-Version": "2.69"}, "2.69"),  # an old Nova: only the legacy header
        ({"OpenStack-API-Version": "volume 3.0"}, None),
        ({}, None),  # a proxy that strips the header: we cannot know what we were served
    ],
)
def test_echoed(headers: dict[str, str], expected: str | None) -> None:
    assert echoed(headers) == (V(expected) if expected else None)


class Fetcher:
    def __init__(self, *results: VersionRange | Exception | None, delay: float = 0.0) -> None:
        self.results = list(results)
        self.calls: list[str] = []
        self.delay = delay

    async def __call__(self, url: str) -> VersionRange | None:
        self.calls.append(url)
        await asyncio.sleep(self.delay)
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, Exception):
            raise result
        return result


MODERN = VersionRange(V("2.1"), V("2.96"))
OLD = VersionRange(V("2.1"), V("2.60"))


async def test_cache_fetches_once_per_endpoint_and_shares_the_fetch_in_flight() -> None:
    cache = MicroversionCache()
    fetch = Fetcher(MODERN, delay=0.01)
    results = await asyncio.gather(*(cache.get("http://a/v2.1/", fetch) for _ in range(5)))
    assert results == [PARTIAL_SERVERS] * 5
    assert await cache.get("http://a/v2.1/", fetch) == PARTIAL_SERVERS
    assert fetch.calls == ["http://a/v2.1/"]
    assert await cache.get("http://b/v2.1/", Fetcher(OLD)) is None  # another endpoint, its own answer


async def test_cache_expires_and_can_be_invalidated() -> None:
    now = [0.0]
    cache = MicroversionCache(ttl=60.0, clock=lambda: now[0])
    fetch = Fetcher(OLD, MODERN, MODERN)
    assert await cache.get("u", fetch) is None  # "not offered" is cached like an answer
    assert await cache.get("u", fetch) is None
    now[0] = 61.0  # upgraded meanwhile
    assert await cache.get("u", fetch) == PARTIAL_SERVERS
    cache.invalidate("u")
    assert await cache.get("u", fetch) == PARTIAL_SERVERS
    assert len(fetch.calls) == 3


async def test_cache_does_not_remember_a_failed_fetch() -> None:
    cache = MicroversionCache()
    fetch = Fetcher(OpenStackUnavailable("compute", "get_version", 4, "HTTP 503"), MODERN)
    with pytest.raises(OpenStackUnavailable):
        await cache.get("u", fetch)
    assert await cache.get("u", fetch) == PARTIAL_SERVERS
    assert len(fetch.calls) == 2
