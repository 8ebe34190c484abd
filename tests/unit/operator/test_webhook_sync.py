"""WebhookSync against a scripted API: create-only Secret with a lost race, optimistic update, the order
bundle-before-certificate, readiness and the loop's scheduling."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from multinic_ctrl.kube.client import ApiError, Resource
from multinic_ctrl.operator.webhook_config import desired_configuration, injected_bundle
from multinic_ctrl.operator.webhook_sync import WebhookSync
from multinic_ctrl.operator.webhook_tls import TLS_CERT, Identity, Lifetimes, decode_secret_data, plan_secret

IDENTITY = Identity("multinic-operator-webhook", "multinic-system", ("127.0.0.1",))
T0 = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)


class FakeApi:
    """Secrets and webhook configurations in dicts; records every call in order."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.version = 0
        self.conflict_on_next_write: dict[str, Any] | None = None  # what "another replica" wrote first

    def _key(self, resource: Resource, name: str) -> tuple[str, str]:
        return resource.plural, name

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.calls.append(f"get {resource.plural}")
        found = self.objects.get(self._key(resource, name))
        if found is None:
            raise ApiError(404, "NotFound")
        return found

    def _store(self, resource: Resource, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}
        self.objects[self._key(resource, body["metadata"]["name"])] = stored
        return stored

    def _race(self, resource: Resource) -> None:
        if self.conflict_on_next_write is not None:
            self._store(resource, self.conflict_on_next_write)
            self.conflict_on_next_write = None
            raise ApiError(409, "Conflict")

    async def create(self, resource: Resource, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        self.calls.append(f"create {resource.plural}")
        self._race(resource)
        if self._key(resource, body["metadata"]["name"]) in self.objects:
            raise ApiError(409, "AlreadyExists")
        return self._store(resource, body)

    async def replace(
        self, resource: Resource, name: str, body: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        self.calls.append(f"replace {resource.plural}")
        self._race(resource)
        current = self.objects[self._key(resource, name)]
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict")
        return self._store(resource, body)

    async def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        assert method == "PATCH" and "validatingwebhookconfigurations" in path
        self.calls.append("apply validatingwebhookconfigurations")
        body = kw["body"]
        self.version += 1
        self.objects[("validatingwebhookconfigurations", body["metadata"]["name"])] = body
        return body


class FakeHook:
    def __init__(self, api: FakeApi) -> None:
        self.api = api

        class _Tls:
            cert_pem = b""

        self.tls = _Tls()

    def set_certificate(self, cert: bytes, key: bytes) -> None:
        self.api.calls.append("serve certificate")
        self.tls.cert_pem = cert


def configuration(bundle: bytes) -> dict[str, Any]:
    return desired_configuration(ca_bundle=bundle, client="https://127.0.0.1:9443/validate", operator_users=["op"])


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make(api: FakeApi, clock: Clock, hook: FakeHook | None = None, **kw: Any) -> WebhookSync:
    return WebhookSync(
        api,  # type: ignore[arg-type]
        secret_name="webhook-tls",
        identity=IDENTITY,
        configuration=configuration,
        webhook=hook,  # type: ignore[arg-type]
        clock=clock,
        **kw,
    )


def stored_secret(api: FakeApi) -> dict[str, bytes]:
    return decode_secret_data(api.objects[("secrets", "webhook-tls")]["data"])


async def test_fresh_sync_writes_secret_then_bundle_then_certificate() -> None:
    api, clock = FakeApi(), Clock(T0)
    hook = FakeHook(api)
    sync = make(api, clock, hook)
    plan = await sync.sync()
    assert plan.reasons == ("created",)
    assert [c for c in api.calls if not c.startswith("get")] == [
        "create secrets",
        "apply validatingwebhookconfigurations",
        "serve certificate",
    ]
    assert sync.ready
    assert stored_secret(api) == plan.data
    live = api.objects[("validatingwebhookconfigurations", "vprotection.multinic.example.com")]
    assert injected_bundle(live) == plan.material.bundle
    # nothing to do the second time
    api.calls.clear()
    again = await sync.sync()
    assert not again.changed
    assert [c for c in api.calls if not c.startswith("get")] == []


async def test_lost_create_race_uses_the_winners_material() -> None:
    api, clock = FakeApi(), Clock(T0)
    winner = plan_secret(None, IDENTITY, T0, Lifetimes()).data
    api.conflict_on_next_write = {
        "metadata": {"name": "webhook-tls"},
        "data": {k: base64.b64encode(v).decode() for k, v in winner.items()},
    }
    plan = await make(api, clock).ensure_certificate()
    assert not plan.changed
    assert plan.data == winner


async def test_renewal_updates_with_the_read_resource_version() -> None:
    api, clock = FakeApi(), Clock(T0)
    sync = make(api, clock, lifetimes=Lifetimes(serving=timedelta(days=3)))
    first = await sync.ensure_certificate()
    clock.now = T0 + timedelta(days=2, hours=1)
    renewed = await sync.ensure_certificate()
    assert renewed.reasons == ("serving-renewed",)
    assert "replace secrets" in api.calls
    assert stored_secret(api)[TLS_CERT] != first.data[TLS_CERT]


async def test_an_edited_bundle_is_reinjected_without_touching_the_secret() -> None:
    api, clock = FakeApi(), Clock(T0)
    sync = make(api, clock)
    plan = await sync.sync()
    live = api.objects[("validatingwebhookconfigurations", "vprotection.multinic.example.com")]
    live["webhooks"][0]["clientConfig"]["caBundle"] = "Zm9v"
    api.calls.clear()
    await sync.sync()
    assert "apply validatingwebhookconfigurations" in api.calls
    assert not any(c.startswith(("create secrets", "replace secrets")) for c in api.calls)
    assert injected_bundle(live) is None  # the old dict was replaced by the applied one
    fixed = api.objects[("validatingwebhookconfigurations", "vprotection.multinic.example.com")]
    assert injected_bundle(fixed) == plan.material.bundle


async def test_failure_is_not_ready_and_the_loop_retries() -> None:
    api, clock = FakeApi(), Clock(T0)
    sync = make(api, clock)
    failures = 0
    original = api.create

    async def flaky(*args: Any, **kw: Any) -> dict[str, Any]:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise ApiError(500, "InternalError")
        return await original(*args, **kw)

    api.create = flaky  # type: ignore[method-assign]
    task = asyncio.create_task(sync.run(period=30, max_backoff=0.05))
    try:
        for _ in range(200):
            if sync.ready:
                break
            await asyncio.sleep(0.01)
        assert sync.ready and failures == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_poke_wakes_the_loop() -> None:
    api, clock = FakeApi(), Clock(T0)
    sync = make(api, clock)
    task = asyncio.create_task(sync.run(period=30))
    try:
        for _ in range(200):
            if sync.ready:
                break
            await asyncio.sleep(0.01)
        del api.objects[("validatingwebhookconfigurations", "vprotection.multinic.example.com")]
        sync.poke()
        for _ in range(200):
            if ("validatingwebhookconfigurations", "vprotection.multinic.example.com") in api.objects:
                break
            await asyncio.sleep(0.01)
        assert ("validatingwebhookconfigurations", "vprotection.multinic.example.com") in api.objects
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
