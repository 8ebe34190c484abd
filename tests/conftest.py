"""Shared fixtures: a real etcd + kube-apiserver for the integration and e2e tiers, one per test session.

Why session scope: starting the pair takes seconds, tests are isolated by namespaces and
unique names instead.  Missing binaries FAIL the tests (never skip): a silently skipped
integration tier looks exactly like a passing one.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.support.control_plane import CRD_DIR, ControlPlane
from tests.support.plane_fixtures import admin_api, attach_logs, session_plane

_CONTROL_PLANE_KEY = pytest.StashKey[ControlPlane]()
_WORKLOAD_PLANE_KEY = pytest.StashKey[ControlPlane]()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marker into the scheduling group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`): a module's tests stay together on one worker, in order (module
    fixtures such as one install shared by ordered tests); the cluster tier stays on one worker because it has
    one real node (its harness serialises nodes with a host lock anyway), and so does the openstack_real tier:
    its modules share one real testbed (servers, ports, the notification bus) and assume nobody else changes
    it meanwhile."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        group = path
        for shared in ("tests/cluster/", "tests/openstack_real/"):
            if path.startswith(shared):
                group = shared
        item.add_marker(pytest.mark.xdist_group(group))


class _GroupingCheck:
    """Fails a worker whose `--dist loadgroup` would not group: pytest-xdist marks a test's group by appending
    `@group` to its node ID, which pytest 9.2 ignores (pytest-xdist#1386) - the tests then run spread over the
    workers as if unmarked, and the cluster tier's ordered steps land on two nodes at once."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if getattr(config.option, "loadgroup", False) and any("@" not in item.nodeid for item in items):
            message = (
                "pytest-xdist --dist loadgroup is not grouping tests with this pytest (pytest-xdist#1386); "
                "install the versions setup.cfg allows, or run without -n"
            )
            sys.stderr.write(f"\n{message}\n")  # a worker's UsageError reaches the terminal only as a traceback
            raise pytest.UsageError(message)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_GroupingCheck(), "multinic-grouping-check")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach component log tails (apiserver, etcd; controllers and kwok on the workload plane) to failures."""
    report = yield
    attach_logs(item, report, _CONTROL_PLANE_KEY, "control_plane", "control plane logs")
    attach_logs(item, report, _WORKLOAD_PLANE_KEY, "workload_plane", "workload plane logs")
    return report


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver for the whole session (admin kubeconfig, audit log, RBAC)."""
    with session_plane(request.config, _CONTROL_PLANE_KEY) as cp:
        yield cp


@pytest.fixture
async def kube_api(control_plane: ControlPlane) -> AsyncIterator[client.ApiClient]:
    """An admin ``kubernetes_asyncio`` ApiClient bound to this test's event loop."""
    async with admin_api(control_plane) as api:
        yield api


@pytest.fixture(scope="session")
def multinic_crds(control_plane: ControlPlane) -> list[str]:
    """Apply manifests/crds/ (server-side) and wait until every CRD is Established.

    Returns the CRD names.  Server-side apply makes this idempotent and lets tests that
    create the same CRDs through the Python client coexist with it.
    """
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", f"--filename={CRD_DIR}")
    names = control_plane.kubectl(
        "get", f"--filename={CRD_DIR}", "--output=jsonpath={.items[*].metadata.name}"
    ).stdout.split()
    control_plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in names))
    return names


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    """A fresh namespace per test (deleted afterwards, without waiting)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


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
