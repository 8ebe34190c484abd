"""`POST /trigger[/{namespace}/{name}]`: auth, limits, JSON errors, enqueued keys."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from multinic_ctrl.controller import webhook
from multinic_ctrl.controller.webhook import MAX_BODY_BYTES, TriggerEndpoint

TOKEN = "tok-9f8e7d6c5b4a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEYS = ["ns-b/cfg-2", "ns-a/cfg-1", "ns-a/cfg-3"]


@dataclass
class Harness:
    client: TestClient[Any, Any]
    enqueued: list[list[str]] = field(default_factory=list)
    ready: list[bool] = field(default_factory=lambda: [True])
    keys: list[str] = field(default_factory=lambda: list(KEYS))
    seen: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)
    vanished: set[str] = field(default_factory=set)
    record_fails: bool = False

    async def post(self, path: str = "/trigger", **kwargs: Any) -> tuple[aiohttp.ClientResponse, Any]:
        return await self.request("POST", path, **kwargs)

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[aiohttp.ClientResponse, Any]:
        async with self.client.request(method, path, **kwargs) as resp:
            text = await resp.text()
            self.seen.append((resp.status, text, dict(resp.headers)))
            return resp, json.loads(text) if text else None


Factory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    clients: list[TestClient[Any, Any]] = []

    async def factory(token: str = TOKEN, **limits: Any) -> Harness:
        holder: dict[str, Harness] = {}

        async def record(keys: Sequence[str], request_id: str) -> list[str]:
            h = holder["h"]
            if h.record_fails:
                raise RuntimeError("apiserver unavailable: 10.96.0.1:443 refused")
            h.enqueued.append(list(keys))
            h.request_ids.append(request_id)
            return [k for k in keys if k not in h.vanished]

        endpoint = TriggerEndpoint(
            token,
            known_keys=lambda: holder["h"].keys,
            record=record,
            ready=lambda: holder["h"].ready[0],
            **({"burst": 1000, "rate": 1000.0, "global_burst": 1000, "global_rate": 1000.0} | limits),
        )
        app = web.Application()
        endpoint.install(app)
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        holder["h"] = Harness(client)
        return holder["h"]

    yield factory
    for client in clients:
        await client.close()


def assert_error(resp: aiohttp.ClientResponse, body: Any, status: int) -> None:
    assert resp.status == status
    assert resp.content_type == "application/json"
    assert set(body) == {"error", "status"}
    assert body["status"] == status
    assert isinstance(body["error"], str) and body["error"]


def assert_token_never_leaked(h: Harness) -> None:
    assert h.seen
    for _, text, headers in h.seen:
        assert TOKEN not in text
        assert all(TOKEN not in v for v in headers.values())


# ---------------------------------------------------------------- success


async def test_trigger_all_enqueues_every_known_key_sorted(make: Factory) -> None:
    h = await make()
    resp, body = await h.post("/trigger", headers=AUTH)
    assert resp.status == 202
    assert resp.content_type == "application/json"
    assert body == {"enqueued": ["ns-a/cfg-1", "ns-a/cfg-3", "ns-b/cfg-2"], "request": h.request_ids[0]}
    assert h.enqueued == [["ns-a/cfg-1", "ns-a/cfg-3", "ns-b/cfg-2"]]
    assert_token_never_leaked(h)


async def test_trigger_one_config(make: Factory) -> None:
    h = await make()
    resp, body = await h.post("/trigger/ns-b/cfg-2", headers=AUTH)
    assert resp.status == 202
    assert body == {"enqueued": ["ns-b/cfg-2"], "request": h.request_ids[0]}
    assert h.enqueued == [["ns-b/cfg-2"]]


async def test_trigger_all_with_no_configs(make: Factory) -> None:
    h = await make()
    h.keys = []
    resp, body = await h.post("/trigger", headers=AUTH)
    assert (resp.status, body["enqueued"]) == (202, [])


async def test_known_keys_are_read_per_request(make: Factory) -> None:
    h = await make()
    resp, _ = await h.post("/trigger/ns-new/cfg", headers=AUTH)
    assert resp.status == 404
    h.keys.append("ns-new/cfg")
    resp, body = await h.post("/trigger/ns-new/cfg", headers=AUTH)
    assert (resp.status, body["enqueued"]) == (202, ["ns-new/cfg"])


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"Bearer  {TOKEN}", f"Bearer {TOKEN} "],
)
async def test_accepted_authorization_forms(make: Factory, header: str) -> None:
    h = await make()
    resp, _ = await h.post("/trigger", headers={"Authorization": header})
    assert resp.status == 202


@pytest.mark.parametrize(
    "data",
    [b"", b'{"reason": "deploy finished"}', b"x" * MAX_BODY_BYTES],
    ids=["empty", "json", "exactly-the-limit"],
)
async def test_small_bodies_are_accepted(make: Factory, data: bytes) -> None:
    h = await make()
    resp, _ = await h.post("/trigger", headers=AUTH, data=data)
    assert resp.status == 202


async def test_small_chunked_body_is_accepted(make: Factory) -> None:
    h = await make()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 100

    resp, _ = await h.post("/trigger", headers=AUTH, data=chunks())
    assert resp.status == 202


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN.upper()}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Token {TOKEN}"},
        {"X-Token": TOKEN},
    ],
    ids=lambda h: repr(h).replace(TOKEN, "<token>"),
)
@pytest.mark.parametrize("path", ["/trigger", "/trigger/ns-a/cfg-1", "/trigger/ns-x/unknown"])
async def test_401_without_a_valid_token(make: Factory, headers: dict[str, str], path: str) -> None:
    h = await make()
    resp, body = await h.post(path, headers=headers)
    assert_error(resp, body, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert h.enqueued == []
    assert_token_never_leaked(h)


async def test_unknown_config_is_not_revealed_before_authentication(make: Factory) -> None:
    h = await make()
    resp, _ = await h.post("/trigger/ns-x/unknown")
    assert resp.status == 401


# ---------------------------------------------------------------- 404 / 405 / 413


@pytest.mark.parametrize("path", ["/trigger/ns-x/unknown", "/trigger/ns-a/cfg-2", "/trigger/cfg-1/ns-a"])
async def test_404_for_an_unknown_config(make: Factory, path: str) -> None:
    h = await make()
    resp, body = await h.post(path, headers=AUTH)
    assert_error(resp, body, 404)
    assert path.removeprefix("/trigger/") in body["error"]
    assert h.enqueued == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/trigger", "/trigger/ns-a/cfg-1"])
async def test_405_for_other_methods(make: Factory, method: str, path: str) -> None:
    h = await make()
    resp, body = await h.request(method, path, headers=AUTH)
    assert_error(resp, body, 405)
    assert resp.headers["Allow"] == "POST"
    assert method in body["error"]
    assert h.enqueued == []
    assert_token_never_leaked(h)


async def test_405_even_without_a_token(make: Factory) -> None:
    h = await make()
    resp, body = await h.request("GET", "/trigger")
    assert_error(resp, body, 405)


async def test_413_with_content_length(make: Factory) -> None:
    h = await make()
    resp, body = await h.post("/trigger", headers=AUTH, data=b"x" * (MAX_BODY_BYTES + 1))
    assert_error(resp, body, 413)
    assert str(MAX_BODY_BYTES) in body["error"]
    assert h.enqueued == []


async def test_413_for_a_large_chunked_body_sent_at_once(make: Factory) -> None:
    h = await make()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * (MAX_BODY_BYTES * 4)

    resp, body = await h.post("/trigger", headers=AUTH, data=chunks())
    assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert_error(resp, body, 413)
    assert h.enqueued == []


async def test_413_for_a_declared_length_without_sending_it(make: Factory) -> None:
    """The Content-Length check rejects before reading: no need to receive a megabyte to refuse it."""
    h = await make()
    reader, writer = await asyncio.open_connection("127.0.0.1", h.client.port)
    try:
        writer.write(
            (
                f"POST /trigger HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Length: 1048576\r\nConnection: close\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413")
    assert h.enqueued == []


# ---------------------------------------------------------------- 503


async def test_503_when_no_token_is_configured(make: Factory) -> None:
    h = await make(token="")
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        resp, body = await h.post("/trigger", headers=headers)
        assert_error(resp, body, 503)
        assert "no token configured" in body["error"]
    assert h.enqueued == []


async def test_503_when_not_ready(make: Factory) -> None:
    h = await make()
    h.ready[0] = False
    resp, body = await h.post("/trigger/ns-a/cfg-1", headers=AUTH)
    assert_error(resp, body, 503)
    assert resp.headers["Retry-After"] == "5"
    assert h.enqueued == []
    h.ready[0] = True
    resp, _ = await h.post("/trigger/ns-a/cfg-1", headers=AUTH)
    assert resp.status == 202


async def test_not_ready_does_not_bypass_authentication(make: Factory) -> None:
    h = await make()
    h.ready[0] = False
    resp, _ = await h.post("/trigger", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401


# ---------------------------------------------------------------- 429


async def test_429_after_the_burst_with_retry_after(make: Factory) -> None:
    h = await make(burst=3, rate=0.5)
    for _ in range(3):
        resp, _ = await h.post("/trigger", headers=AUTH)
        assert resp.status == 202
    resp, body = await h.post("/trigger", headers=AUTH)
    assert_error(resp, body, 429)
    assert resp.headers["Retry-After"] == "2"  # one token at 0.5/s
    assert len(h.enqueued) == 3
    assert_token_never_leaked(h)


async def test_a_flood_of_bad_tokens_does_not_lock_out_the_real_caller(make: Factory) -> None:
    """Same address (NAT, an ingress): failures have their own budget, successes theirs."""
    h = await make(failure_burst=2, failure_rate=0.01)
    for _ in range(2):
        resp, _ = await h.post("/trigger", headers={"Authorization": "Bearer wrong"})
        assert resp.status == 401
    resp, body = await h.post("/trigger", headers={"Authorization": "Bearer wrong"})
    assert_error(resp, body, 429)
    assert int(resp.headers["Retry-After"]) >= 1
    resp, _ = await h.post("/trigger", headers=AUTH)
    assert resp.status == 202, "the caller with the token is not locked out"
    assert len(h.enqueued) == 1


async def test_the_global_cap_bounds_all_clients_together(make: Factory) -> None:
    h = await make(global_burst=3, global_rate=0.01)
    statuses = [(await h.post("/trigger", headers=AUTH))[0].status for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    # and the failed-authentication cap is separate from the successes'
    h2 = await make(global_burst=2, global_rate=0.01, failure_burst=100)
    statuses = [(await h2.post("/trigger", headers={"Authorization": "Bearer x"}))[0].status for _ in range(3)]
    assert statuses == [401, 401, 429]
    assert (await h2.post("/trigger", headers=AUTH))[0].status == 202


async def test_the_token_is_checked_before_the_body_is_read(make: Factory) -> None:
    h = await make()
    resp, body = await h.post("/trigger", headers={"Authorization": "Bearer wrong"}, data=b"z" * (MAX_BODY_BYTES * 4))
    assert_error(resp, body, 401)


async def test_each_request_gets_a_new_id_recorded_with_the_keys(make: Factory) -> None:
    h = await make()
    first = (await h.post("/trigger/ns-a/cfg-1", headers=AUTH))[1]["request"]
    second = (await h.post("/trigger/ns-a/cfg-1", headers=AUTH))[1]["request"]
    assert first != second and h.request_ids == [first, second]


async def test_configs_deleted_meanwhile_are_left_out(make: Factory) -> None:
    h = await make()
    h.vanished = {"ns-a/cfg-3"}
    resp, body = await h.post("/trigger", headers=AUTH)
    assert resp.status == 202 and body["enqueued"] == ["ns-a/cfg-1", "ns-b/cfg-2"]


async def test_503_when_the_request_cannot_be_recorded_and_no_detail_leaks(make: Factory) -> None:
    h = await make()
    h.record_fails = True
    resp, body = await h.post("/trigger", headers=AUTH)
    assert_error(resp, body, 503)
    assert "10.96.0.1" not in json.dumps(body)


async def test_the_bucket_refills(make: Factory) -> None:
    h = await make(burst=1, rate=20.0)
    assert (await h.post("/trigger", headers=AUTH))[0].status == 202
    resp, _ = await h.post("/trigger", headers=AUTH)
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "1"  # never 0
    await asyncio.sleep(0.2)
    assert (await h.post("/trigger", headers=AUTH))[0].status == 202


def test_token_buckets_are_per_client_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    buckets = webhook._TokenBuckets(burst=2, rate=1.0)
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0.0  # another client has its own bucket
    clock[0] += 0.5
    assert buckets.take("a") == pytest.approx(0.5)  # still short: the refused request took nothing
    clock[0] += 10
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]  # refilled, capped at the burst
    assert buckets.take("a") > 0
    for i in range(webhook._MAX_CLIENTS + 10):
        buckets.take(f"client-{i}")
    assert len(buckets._buckets) == webhook._MAX_CLIENTS


# ---------------------------------------------------------------- everything at once


async def test_no_response_ever_contains_the_token(make: Factory) -> None:
    h = await make(burst=40, rate=0.01)
    await h.post("/trigger", headers=AUTH)
    await h.post("/trigger/ns-a/cfg-1", headers=AUTH)
    await h.post("/trigger/ns-x/nope", headers=AUTH)
    await h.post("/trigger", headers={"Authorization": f"Bearer {TOKEN}-suffix"})
    await h.post("/trigger", headers={"Authorization": f"Basic {TOKEN}"})
    await h.post("/trigger", headers=AUTH, data=b"z" * (MAX_BODY_BYTES + 10))
    await h.request("GET", "/trigger", headers=AUTH)
    await h.request("DELETE", "/trigger/ns-a/cfg-1", headers=AUTH)
    h.ready[0] = False
    await h.post("/trigger", headers=AUTH)
    h.ready[0] = True
    while (await h.post("/trigger", headers=AUTH))[0].status != 429:
        pass
    statuses = {status for status, _, _ in h.seen}
    assert statuses == {202, 401, 404, 405, 413, 429, 503}
    for status, text, _ in h.seen:
        if status != 202:
            assert json.loads(text) == {"error": json.loads(text)["error"], "status": status}
    assert_token_never_leaked(h)
