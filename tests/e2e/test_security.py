"""Issue 10 on the real apiserver: Secret references stay in their namespace, the Secret cache holds no
content, and a webhook trigger received by a standby replica is handled exactly once by the leader."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client

from multinic_ctrl.controller.triggers import HANDLED_FIELD, TRIGGER_ANNOTATION
from tests.e2e.harness import Env, config_body, leader_and_standby, wait_for
from tests.support.control_plane import ControlPlane
from tests.unit.openstack.scripted import Reply, Scripted, scripted_server

pytestmark = pytest.mark.e2e

ESCAPE = "../../kube-system/secrets/admin-token"


@pytest.fixture
async def attacker() -> AsyncIterator[Scripted]:
    """Where a hostile config points `authURL`: records every request; Keystone answers with text to reflect."""
    async with scripted_server() as server:
        server.add("POST", "/v3/auth/tokens", Reply(400, {"error": {"message": "<b>reflected</b>"}}))
        yield server


# ------------------------------------------------------------------ 1. Secret references stay in the namespace


@pytest.mark.parametrize(
    "field",
    [
        ("credentials", "passwordSecretRef", "name"),
        ("credentials", "passwordSecretRef", "key"),
        ("credentialsSecretRef", "name"),
    ],
    ids=lambda f: ".".join(f),
)
async def test_escaping_secret_references_are_rejected_at_admission(env: Env, field: tuple[str, ...]) -> None:
    body = config_body("hostile", ["test-vm-1"], env.sim, secret_ref=("os-creds", "password"))
    if field[0] == "credentialsSecretRef":
        body["spec"]["credentialsSecretRef"] = {"name": ESCAPE}
    else:
        body["spec"]["credentials"]["passwordSecretRef"][field[-1]] = ESCAPE
    with pytest.raises(client.ApiException) as caught:
        await env.create(body)
    assert caught.value.status == 422
    message = json.loads(caught.value.body)["message"]
    assert f"spec.{'.'.join(field)}" in message
    assert await env.get("hostile") is None


async def test_a_hand_built_escaping_reference_reads_nothing_outside_and_sends_nothing(
    env: Env, control_plane: ControlPlane, attacker: Scripted
) -> None:
    """An object that bypassed the schema (stored before it, or fed from elsewhere) reaches the reconciler."""
    assert env.service is not None
    started = dt.datetime.now(dt.UTC)
    control_plane.kubectl("-n", "default", "create", "secret", "generic", "victim", "--from-literal=password=stolen")
    body = config_body("cfg", ["test-vm-1"], env.sim, secret_ref=("os-creds", "password"))
    body["spec"]["credentials"]["authURL"] = attacker.url
    await env.create(body)

    # What the reconciler sees is the hostile object: the cache view is replaced for this one key.
    view = env.service.configs
    real_get = view.get

    def tampered(key: str) -> dict[str, Any] | None:
        obj = real_get(key)
        if obj is not None and key == f"{env.namespace}/cfg":
            obj["spec"]["credentials"]["passwordSecretRef"]["name"] = "../../default/secrets/victim"
        return obj

    view.get = tampered  # type: ignore[method-assign]
    try:
        assert env.service.controller is not None
        env.service.controller.queue.add(f"{env.namespace}/cfg")
        status = await env.wait_status("cfg", lambda s: s.get("reason") == "InvalidSpec", "refused with a reason")
    finally:
        view.get = real_get  # type: ignore[method-assign]
    assert "passwordSecretRef.name" in status["message"] and "not a valid Secret name" in status["message"]
    assert attacker.seen == [], "nothing may reach the config's authURL"
    outside = [
        e
        for e in control_plane.audit_events()
        if e.get("objectRef", {}).get("resource") == "secrets"
        and e.get("objectRef", {}).get("namespace") != env.namespace
        and e.get("verb") in ("get", "list", "watch")
        and dt.datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00")) >= started
    ]
    assert outside == [], f"Secrets read outside the config's namespace: {[e['requestURI'] for e in outside]}"


# ------------------------------------------------------------------ 2. error text from endpoints is not reflected


async def test_status_quotes_no_response_body_from_an_endpoint(env: Env, attacker: Scripted) -> None:
    body = config_body("cfg", ["test-vm-1"], env.sim)
    body["spec"]["credentials"]["authURL"] = attacker.url
    await env.create(body)
    status = await env.wait_status("cfg", lambda s: s.get("phase") == "Error", "error from the endpoint")
    assert "HTTP 400" in status["message"]
    assert "reflected" not in json.dumps(status)
    assert all("reflected" not in e["message"] for e in await env.events("cfg"))


async def test_plaintext_endpoints_give_a_warning_condition_and_event(env: Env) -> None:
    await env.create(config_body("cfg", ["test-vm-1"], env.sim))
    status = await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced")
    transport = next(c for c in status["conditions"] if c["type"] == "SecureTransport")
    assert (transport["status"], transport["reason"]) == ("False", "PlaintextEndpoint")
    assert "http://127.0.0.1:" in transport["message"]
    events = await env.events("cfg")
    assert any(e["reason"] == "PlaintextEndpoint" and e["type"] == "Warning" for e in events)


async def test_the_allow_list_refuses_other_endpoints_before_any_request(env: Env) -> None:
    await env.stop()
    env.settings = replace(
        env.settings, controller=replace(env.settings.controller, openstack_allowed_urls="https://*.cloud.example")
    )
    await env.start()
    env.sim.request_log.clear()
    await env.create(config_body("cfg", ["test-vm-1"], env.sim))
    status = await env.wait_status("cfg", lambda s: s.get("reason") == "EndpointNotAllowed", "refused")
    assert "OPENSTACK_ALLOWED_URLS" in status["message"]
    assert env.sim.request_log.count() == 0, "not even Keystone was asked"
    assert await env.agent_rows("test-vm-1") == []


# ------------------------------------------------------------------ 3. no Secret content in the cache


async def test_the_secret_cache_keeps_identity_only(env: Env, control_plane: ControlPlane) -> None:
    """`kubectl apply` puts the whole Secret, data included, into an annotation: none of it may be cached."""
    assert env.service is not None
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "os-creds", "labels": {"team": "net"}, "annotations": {"note": "hello"}},
        "stringData": {"password": "admin"},
    }
    control_plane.kubectl("-n", env.namespace, "apply", "-f", "-", stdin=json.dumps(manifest))
    live = control_plane.kubectl("-n", env.namespace, "get", "secret", "os-creds", "-o", "json").stdout
    assert "last-applied-configuration" in live, "the premise: kubectl apply stored the data in an annotation"

    store = env.service.secret_informers[0].store
    await wait_for(lambda: f"{env.namespace}/os-creds" in store, "Secret seen by the informer")
    cached = store.get(f"{env.namespace}/os-creds")
    assert cached is not None
    assert set(cached["metadata"]) == {"name", "namespace", "uid", "resourceVersion"}
    assert set(cached) <= {"apiVersion", "kind", "metadata"}
    encoded = base64.b64encode(b"admin").decode()
    dump = json.dumps(store.objects())
    assert "admin" not in dump and encoded not in dump and "last-applied" not in dump

    # The controller still works from it: a config referencing the Secret syncs, and a rotation is seen.
    await env.create(config_body("cfg", ["test-vm-1"], env.sim, secret_ref=("os-creds", "password")))
    await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced with the Secret")
    env.sim.request_log.clear()
    manifest["stringData"] = {"password": "wrong"}
    control_plane.kubectl("-n", env.namespace, "apply", "-f", "-", stdin=json.dumps(manifest))
    await env.wait_status("cfg", lambda s: s.get("reason") == "AuthenticationFailed", "rotation seen")


# ------------------------------------------------------------------ 4. the spec hash reveals nothing, still skips


async def test_the_stored_hash_does_not_depend_on_the_secret_password(env: Env, control_plane: ControlPlane) -> None:
    await env.put_secret("os-creds", {"password": "admin"})
    await env.create(config_body("cfg", ["test-vm-1"], env.sim, secret_ref=("os-creds", "password")))
    await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced")
    state = await env.repo.state_of(env.namespace, "cfg")
    assert state is not None
    # A restart with nothing changed makes no OpenStack call (the hash is stable without any key). Resyncs an hour
    # apart: a 30 s slot falling inside these seconds would be a legitimate call (it failed CI once).
    await env.stop()
    env.sim.request_log.clear()
    await env.start(resync_seconds=3600.0)
    await asyncio.sleep(2)
    assert env.sim.request_log.count() == 0
    after = await env.repo.state_of(env.namespace, "cfg")
    assert after is not None and after.spec_hash == state.spec_hash


# ------------------------------------------------------------------ 5. durable, replica-safe webhook triggers


async def test_a_trigger_posted_to_the_standby_is_handled_once_by_the_leader(env: Env) -> None:
    # Resyncs fall on the identity's slots (every 30 s in this harness): one inside the seconds this test counts
    # observations in would be a second, legitimate call. An hour apart, none does.
    async with leader_and_standby(env, resync_seconds=3600.0) as (_leader, standby, server):
        await env.create(config_body("cfg", ["test-vm-1"], env.sim))
        await env.wait_status("cfg", lambda s: s.get("phase") == "Synced", "synced by the leader")
        await asyncio.sleep(1)
        before = env.sim.request_log.count("network.networks")
        url = f"http://127.0.0.1:{server.bound_port}/trigger/{env.namespace}/cfg"
        headers = {"Authorization": f"Bearer {env.settings.controller.trigger_token}"}
        async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as resp:
            assert resp.status == 202
            request_id = (await resp.json())["request"]
        obj = await env.get("cfg")
        assert obj is not None and obj["metadata"]["annotations"][TRIGGER_ANNOTATION] == request_id
        await env.wait_status("cfg", lambda s: s.get(HANDLED_FIELD) == request_id, "handled by the leader")
        await asyncio.sleep(1.5)
        assert env.sim.request_log.count("network.networks") == before + 1, "exactly one reconcile"
        assert standby.controller is not None and sum(standby.controller.results.values()) == 0
