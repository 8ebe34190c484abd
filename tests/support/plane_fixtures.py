"""The pieces both session control planes share: start (fail, never skip), register for failure logs, stop."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes_asyncio import client

from tests.support.control_plane import ControlPlane, ControlPlaneError, locate_assets, new_api_client


@contextlib.contextmanager
def session_plane(
    config: pytest.Config, key: pytest.StashKey[ControlPlane], *, workloads: bool = False
) -> Iterator[ControlPlane]:
    try:
        assets = locate_assets()
    except ControlPlaneError as exc:
        pytest.fail(str(exc), pytrace=False)
    cp = ControlPlane(assets)
    try:
        cp.start()
        if workloads:
            cp.start_workloads()
    except ControlPlaneError as exc:
        logs = cp.format_log_tails()
        cp.stop()
        pytest.fail(f"control plane did not start: {exc}\n{logs}", pytrace=False)
    config.stash[key] = cp
    try:
        yield cp
    finally:
        del config.stash[key]
        cp.stop()


@contextlib.asynccontextmanager
async def admin_api(cp: ControlPlane) -> AsyncIterator[client.ApiClient]:
    """An admin ApiClient bound to the running test's event loop."""
    api = await new_api_client(cp.kubeconfig_path)
    try:
        yield api
    finally:
        await api.close()


def attach_logs(
    item: pytest.Item, report: pytest.TestReport, key: pytest.StashKey[ControlPlane], fixture: str, title: str
) -> None:
    """On failure, put the plane's component log tails right under the traceback."""
    cp = item.config.stash.get(key, None)
    if report.failed and cp is not None and fixture in getattr(item, "fixturenames", ()):
        report.sections.append((title, cp.format_log_tails()))
