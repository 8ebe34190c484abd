"""Referenced Secrets are read once per version the Secret watch reports (controller/secret_reads.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from multinic_ctrl.controller.secret_reads import SecretReader
from multinic_ctrl.kube import ApiError, InvalidObjectName, Resource
from multinic_ctrl.kube.client import object_key


class FakeSecrets:
    """The apiserver's Secrets, and the resourceVersions its (metadata-only) watch has delivered so far."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.watched: dict[str, str] = {}
        self.gets: list[str] = []
        self._rv = 0

    def put(self, namespace: str, name: str, password: str, *, watch_sees: bool = True) -> None:
        self._rv += 1
        obj = {
            "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}", "resourceVersion": str(self._rv)},
            "data": {"password": base64.b64encode(password.encode()).decode()},
        }
        self.objects[object_key(obj)] = obj
        if watch_sees:
            self.watched[object_key(obj)] = str(self._rv)

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        path = resource.path(namespace, name)  # refuses names that are not names, as the real client does
        self.gets.append(path)
        found = self.objects.get(f"{namespace}/{name}")
        if found is None:
            raise ApiError(404, "Not Found", {"reason": "NotFound"})
        return found


@pytest.fixture
def apiserver() -> FakeSecrets:
    return FakeSecrets()


async def test_one_get_per_version_while_the_watch_shows_it_unchanged(apiserver: FakeSecrets) -> None:
    reader = SecretReader(apiserver, apiserver.watched.get)
    apiserver.put("ns", "creds", "first")
    reads = [await reader.read("ns", "creds") for _ in range(100)]
    assert len(apiserver.gets) == 1
    assert {r.data["password"] for r in reads if r is not None} == {"first"}
    assert reads[0] is not None and reads[0].version.resource_version == "1"


async def test_a_rotation_is_read_once_the_watch_reports_it(apiserver: FakeSecrets) -> None:
    reader = SecretReader(apiserver, apiserver.watched.get)
    apiserver.put("ns", "creds", "first")
    await reader.read("ns", "creds")
    apiserver.put("ns", "creds", "second", watch_sees=False)  # written; its watch event still on the way
    lagging = await reader.read("ns", "creds")
    assert lagging is not None and lagging.data["password"] == "first"  # what the watch says is current
    apiserver.watched["ns/creds"] = apiserver.objects["ns/creds"]["metadata"]["resourceVersion"]
    fresh = await reader.read("ns", "creds")
    assert fresh is not None and fresh.data["password"] == "second" and fresh.version.resource_version == "2"
    assert len(apiserver.gets) == 2


async def test_a_secret_the_watch_does_not_know_is_always_read(apiserver: FakeSecrets) -> None:
    reader = SecretReader(apiserver, lambda _key: None)  # no watch (or not listed yet)
    apiserver.put("ns", "creds", "first")
    for _ in range(3):
        await reader.read("ns", "creds")
    assert len(apiserver.gets) == 3


async def test_missing_deleted_and_hostile_names(apiserver: FakeSecrets) -> None:
    reader = SecretReader(apiserver, apiserver.watched.get)
    assert await reader.read("ns", "absent") is None
    apiserver.put("ns", "creds", "first")
    assert await reader.read("ns", "creds") is not None
    del apiserver.objects["ns/creds"], apiserver.watched["ns/creds"]
    reader.forget("ns/creds")
    assert await reader.read("ns", "creds") is None
    with pytest.raises(InvalidObjectName):
        await reader.read("ns", "../kube-system/secrets/x")


async def test_the_least_recently_used_go_first(apiserver: FakeSecrets) -> None:
    reader = SecretReader(apiserver, apiserver.watched.get, capacity=2)
    for name in ("a", "b", "c"):
        apiserver.put("ns", name, name)
    for name in ("a", "b", "a", "c"):  # c pushes out b, the least recently used
        await reader.read("ns", name)
    apiserver.gets.clear()
    await reader.read("ns", "a")
    await reader.read("ns", "c")
    assert apiserver.gets == []
    await reader.read("ns", "b")
    assert len(apiserver.gets) == 1
