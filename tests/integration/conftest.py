"""The integration tier: fixtures live in tests/conftest.py (shared with tests/e2e, one control plane)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.support.control_plane import ControlPlane
from tests.support.plane_fixtures import admin_api, attach_logs, session_plane

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test below tests/integration with ``integration`` (for ``-m`` selection)."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


_WORKLOAD_PLANE_KEY = pytest.StashKey[ControlPlane]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach the workload plane's component logs (incl. controllers, kwok) to failures."""
    report = yield
    attach_logs(item, report, _WORKLOAD_PLANE_KEY, "workload_plane", "workload plane logs")
    return report


@pytest.fixture(scope="session")
def workload_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A second, separate control plane where Deployments/StatefulSets get Ready Pods.

    Runs kube-controller-manager, kube-scheduler and kwok (two fake nodes) next to etcd and
    kube-apiserver.  Separate from ``control_plane`` so that the controllers' own writes
    (ServiceAccounts, kube-root-ca.crt ConfigMaps, garbage collection) never disturb tests
    that count objects there.  Only started when a test asks for it; fails, never skips.
    """
    with session_plane(request.config, _WORKLOAD_PLANE_KEY, workloads=True) as cp:
        yield cp


@pytest.fixture
async def workload_api(workload_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    """An admin ApiClient for :func:`workload_plane`, bound to this test's event loop."""
    async with admin_api(workload_plane) as api:
        yield api
