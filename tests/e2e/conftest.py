from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from tests.dbsupport import fresh_database
from tests.e2e.harness import Env, controller_env
from tests.fakes.openstack.fixtures import Simulator, running_simulator
from tests.support.control_plane import ControlPlane


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator() as simulator:
        yield simulator


@pytest.fixture
async def env(
    control_plane: ControlPlane,
    multinic_crds: list[str],
    namespace: str,
    kube_api: client.ApiClient,
    sim: Simulator,
) -> AsyncIterator[Env]:
    async with (
        fresh_database() as database,
        controller_env(namespace, kube_api, sim, database, str(control_plane.kubeconfig_path)) as environment,
    ):
        yield environment


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
