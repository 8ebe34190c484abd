"""The integration tier: fixtures live in tests/conftest.py (shared with tests/e2e, one control plane)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.support.control_plane import ControlPlane, ControlPlaneError, locate_assets, new_api_client

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
    cp = item.config.stash.get(_WORKLOAD_PLANE_KEY, None)
    if report.failed and cp is not None and "workload_plane" in getattr(item, "fixturenames", ()):
        report.sections.append(("workload plane logs", cp.format_log_tails()))
    return report


@pytest.fixture(scope="session")
def workload_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A second, separate control plane where Deployments/StatefulSets get Ready Pods.

    Runs kube-controller-manager, kube-scheduler and kwok (two fake nodes) next to etcd and
    kube-apiserver.  Separate from ``control_plane`` so that the controllers' own writes
    (ServiceAccounts, kube-root-ca.crt ConfigMaps, garbage collection) never disturb tests
    that count objects there.  Only started when a test asks for it; fails, never skips.
    """
    try:
        assets = locate_assets()
    except ControlPlaneError as exc:
        pytest.fail(str(exc), pytrace=False)
    cp = ControlPlane(assets)
    try:
        cp.start()
        cp.start_workloads()
    except ControlPlaneError as exc:
        logs = cp.format_log_tails()
        cp.stop()
        pytest.fail(f"workload control plane did not start: {exc}\n{logs}", pytrace=False)
    request.config.stash[_WORKLOAD_PLANE_KEY] = cp
    try:
        yield cp
    finally:
        del request.config.stash[_WORKLOAD_PLANE_KEY]
        cp.stop()


@pytest.fixture
async def workload_api(workload_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    """An admin ApiClient for :func:`workload_plane`, bound to this test's event loop."""
    api = await new_api_client(workload_plane.kubeconfig_path)
    try:
        yield api
    finally:
        await api.close()
