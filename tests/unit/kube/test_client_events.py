"""Resource paths, keys and the Event recorder's aggregation/spam filter against a fake client."""

from __future__ import annotations

from typing import Any

import pytest

from multinic_ctrl.kube.client import CONFIGMAPS, LEASES, NAMESPACES, ApiError, Resource
from multinic_ctrl.kube.events import EventRecorder
from multinic_ctrl.kube.leader import LeaderElector
from multinic_ctrl.kube.patch import merge_patch_body


def test_resource_paths() -> None:
    assert CONFIGMAPS.path() == "/api/v1/configmaps"
    assert CONFIGMAPS.path("ns") == "/api/v1/namespaces/ns/configmaps"
    assert CONFIGMAPS.path("ns", "a") == "/api/v1/namespaces/ns/configmaps/a"
    assert LEASES.path("ns", "l") == "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"
    crd = Resource("multinic.io", "v1alpha1", "openstackconfigs", True, "OpenstackConfig")
    assert crd.path("ns", "x", "status") == "/apis/multinic.io/v1alpha1/namespaces/ns/openstackconfigs/x/status"
    assert crd.api_version == "multinic.io/v1alpha1" and CONFIGMAPS.api_version == "v1"
    assert NAMESPACES.path(name="n") == "/api/v1/namespaces/n"
    with pytest.raises(ValueError):
        NAMESPACES.path("ns")
    with pytest.raises(ValueError):
        CONFIGMAPS.path("ns", subresource="status")


def test_merge_patch_body_adds_the_precondition_without_touching_the_input() -> None:
    patch = {"status": {"a": 1}}
    assert merge_patch_body(patch, "42") == {"status": {"a": 1}, "metadata": {"resourceVersion": "42"}}
    assert patch == {"status": {"a": 1}}
    assert merge_patch_body(patch, None) == patch


def test_leader_defaults_follow_client_go() -> None:
    elector = LeaderElector(object(), name="l", namespace="ns")  # type: ignore[arg-type]
    assert (elector.lease_duration, elector.renew_deadline, elector.retry_period) == (15.0, 10.0, 2.0)
    assert elector.identity
    with pytest.raises(ValueError):
        LeaderElector(object(), name="l", namespace="ns", lease_duration=5, renew_deadline=10)  # type: ignore[arg-type]


class FakeEventsClient:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.fail_patch_404 = False

    async def create(self, resource: Resource, body: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        name = f"{body['metadata']['generateName']}{len(self.created)}"
        self.created.append({**body, "metadata": {**body["metadata"], "name": name}})
        return self.created[-1]

    async def patch(self, resource: Resource, name: str, patch: Any, namespace: str | None = None) -> dict[str, Any]:
        if self.fail_patch_404:
            raise ApiError(404, "NotFound")
        self.patches.append((name, patch))
        return {}


OBJ = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns", "uid": "u1"}}


async def test_repeats_are_counted_not_created() -> None:
    client = FakeEventsClient()
    recorder = EventRecorder(client, "ctl", update_interval=3600)  # type: ignore[arg-type]
    for _ in range(100):
        recorder.warning(OBJ, "Failed", "boom")
    await recorder.drain()
    assert len(client.created) == 1
    created = client.created[0]
    assert created["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "cm",
        "namespace": "ns",
        "uid": "u1",
    }
    assert created["type"] == "Warning" and created["source"]["component"] == "ctl"
    assert client.patches == [
        (created["metadata"]["name"], {"count": 100, "lastTimestamp": client.patches[0][1]["lastTimestamp"]})
    ]
    await recorder.drain()
    assert len(client.patches) == 1, "nothing new: no write"


async def test_spam_filter_and_long_messages() -> None:
    client = FakeEventsClient()
    recorder = EventRecorder(client, "ctl", burst=3)  # type: ignore[arg-type]
    for i in range(10):
        recorder.normal(OBJ, "Step", f"{i} " + "x" * 3000)
    await recorder.drain()
    assert len(client.created) == 3 and recorder.dropped == 7
    assert len(client.created[0]["message"]) == 1024


async def test_expired_event_starts_a_new_one() -> None:
    client = FakeEventsClient()
    recorder = EventRecorder(client, "ctl", update_interval=0)  # type: ignore[arg-type]
    recorder.warning(OBJ, "Failed", "boom")
    await recorder.drain()
    client.fail_patch_404 = True
    recorder.warning(OBJ, "Failed", "boom")
    await recorder.drain()
    client.fail_patch_404 = False
    recorder.warning(OBJ, "Failed", "boom")
    await recorder.drain()
    assert len(client.created) == 2
