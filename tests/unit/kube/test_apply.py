"""Server-side apply: the request on the wire (PATCH, apply-patch+yaml, fieldManager, force, dryRun) through the
real client stack against a loopback server, and the body checks made before any request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from multinic_ctrl.kube.apply import APPLY_PATCH, ApplyError, apply_body, apply_query, server_side_apply
from multinic_ctrl.kube.client import CONFIGMAPS, DEPLOYMENTS, NAMESPACES, ApiError, InvalidObjectName, KubeClient

CONFIGMAP: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "settings", "namespace": "multinic-system", "labels": {"a": "b"}},
    "data": {"k": "v"},
}


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": list(request.query.items()),
                "content_type": request.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
        )
        if self.status != 200:
            return web.json_response({"kind": "Status", "reason": "Conflict"}, status=self.status)
        return web.json_response({**json.loads(body), "metadata": {**json.loads(body)["metadata"], "uid": "u-1"}})


@pytest.fixture
async def served() -> AsyncIterator[tuple[KubeClient, Recorder]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api = ApiClient(Configuration(host=f"http://127.0.0.1:{port}"))
    try:
        yield KubeClient(api), recorder
    finally:
        await api.close()
        await runner.cleanup()


async def test_apply_sends_one_forced_patch_as_the_field_manager(served: tuple[KubeClient, Recorder]) -> None:
    client, recorder = served
    stored = await server_side_apply(client, CONFIGMAPS, CONFIGMAP, field_manager="multinic-operator")
    (request,) = recorder.requests
    assert request["method"] == "PATCH"
    assert request["path"] == "/api/v1/namespaces/multinic-system/configmaps/settings"
    assert request["content_type"] == APPLY_PATCH
    assert request["query"] == [("fieldManager", "multinic-operator"), ("force", "true")]
    assert request["body"] == CONFIGMAP
    assert stored["metadata"]["uid"] == "u-1"


async def test_dry_run_and_unforced(served: tuple[KubeClient, Recorder]) -> None:
    client, recorder = served
    await server_side_apply(client, CONFIGMAPS, CONFIGMAP, field_manager="m", force=False, dry_run=True)
    assert recorder.requests[0]["query"] == [("fieldManager", "m"), ("dryRun", "All")]


async def test_cluster_scoped_path(served: tuple[KubeClient, Recorder]) -> None:
    client, recorder = served
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "multinic-system"}}
    await server_side_apply(client, NAMESPACES, namespace, field_manager="m")
    assert recorder.requests[0]["path"] == "/api/v1/namespaces/multinic-system"


async def test_errors_surface_as_api_errors(served: tuple[KubeClient, Recorder]) -> None:
    client, recorder = served
    recorder.status = 409
    with pytest.raises(ApiError) as err:
        await server_side_apply(client, CONFIGMAPS, CONFIGMAP, field_manager="m", force=False)
    assert err.value.status == 409


def test_body_drops_status_and_server_set_metadata() -> None:
    live = {
        **CONFIGMAP,
        "metadata": {
            **CONFIGMAP["metadata"],
            "resourceVersion": "7",
            "uid": "u",
            "creationTimestamp": "t",
            "generation": 2,
        },
        "status": {"x": 1},
    }
    assert apply_body(CONFIGMAPS, live) == CONFIGMAP
    assert live["metadata"]["resourceVersion"] == "7"  # the input is not modified


@pytest.mark.parametrize(
    ("resource", "obj", "problem"),
    [
        (CONFIGMAPS, {**CONFIGMAP, "kind": "Secret"}, "not v1/ConfigMap"),
        (DEPLOYMENTS, CONFIGMAP, "not apps/v1/Deployment"),
        (CONFIGMAPS, {**CONFIGMAP, "metadata": {"namespace": "ns"}}, "metadata.name"),
        (CONFIGMAPS, {**CONFIGMAP, "metadata": {"name": "x"}}, "namespace is required"),
        (CONFIGMAPS, {**CONFIGMAP, "metadata": {**CONFIGMAP["metadata"], "managedFields": [{"manager": "x"}]}},
         "managedFields"),
        (NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "namespace": "b"}},
         "cluster-scoped"),
    ],
)  # fmt: skip
def test_bodies_that_cannot_be_applied(resource: Any, obj: dict[str, Any], problem: str) -> None:
    with pytest.raises(ApplyError, match=problem):
        apply_body(resource, obj)


@pytest.mark.parametrize("manager", ["", "x" * 129, "bad\nmanager"])
def test_field_manager_is_checked(manager: str) -> None:
    with pytest.raises(ApplyError):
        apply_query(manager)


async def test_names_that_are_not_path_segments_are_refused(served: tuple[KubeClient, Recorder]) -> None:
    client, recorder = served
    hostile = {**CONFIGMAP, "metadata": {"name": "../secrets/x", "namespace": "multinic-system"}}
    with pytest.raises(InvalidObjectName):
        await server_side_apply(client, CONFIGMAPS, hostile, field_manager="m")
    assert recorder.requests == []
