"""Running the operator in-process on the workload plane (kube-controller-manager, scheduler, kwok nodes), exactly as
`multinic-ctrl operator` wires it, plus the small readers the operator tests share."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multinic_ctrl.kube import ApiError, KubeClient, is_not_found
from multinic_ctrl.operator.resources import MANAGED, MULTINICOPERATORS, SECRETS
from multinic_ctrl.operator.service import OperatorService
from multinic_ctrl.settings import OperatorSettings, Settings
from tests.support.control_plane import CRD_DIR, ControlPlane

CONTROLLER_IMAGE = "registry.invalid/multinic/controller:v1"
DATABASE_IMAGE = "registry.invalid/mariadb:10.11"


def operator_body(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "controller": {"image": CONTROLLER_IMAGE, "replicas": 2},
        "database": {"image": DATABASE_IMAGE, "storageSize": "1Gi", "backup": {"schedule": "*/1 * * * *"}},
    }
    body.update(spec)
    return {
        "apiVersion": MULTINICOPERATORS.api_version,
        "kind": "MultiNicOperator",
        "metadata": {"name": name},
        "spec": body,
    }


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
        except ApiError as exc:
            if not is_not_found(exc):
                raise
            last = None
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})"[:2000])
        await asyncio.sleep(0.2)


def ensure_crds(plane: ControlPlane) -> None:
    plane.kubectl("apply", "--server-side", "--force-conflicts", f"--filename={CRD_DIR}")
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/multinicoperators.multinic.example.com")


@dataclass
class OperatorProcess:
    """One operator instance (a replica); `stop()` is the SIGTERM path."""

    settings: Settings
    service: OperatorService | None = None
    task: asyncio.Task[None] | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self.stop_event = asyncio.Event()
        self.service = OperatorService(self.settings)
        self.task = asyncio.create_task(self.service.run(self.stop_event))

        async def synced() -> bool:
            if self.task is not None and self.task.done():
                self.task.result()
            return self.service is not None and self.service.caches.synced

        await eventually(synced, "operator caches to sync", 30)

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)


@contextlib.asynccontextmanager
async def running_operator(
    kubeconfig: Path, namespaces: tuple[str, ...], **operator: Any
) -> AsyncIterator[OperatorProcess]:
    settings = Settings(
        kubeconfig=kubeconfig,
        operator=OperatorSettings(
            namespaces=namespaces, leader_elect=operator.pop("leader_elect", False), resync_seconds=30, **operator
        ),
    )
    proc = OperatorProcess(settings)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


class Cluster:
    """Admin reads and writes for assertions (the operator's own client is never used for them)."""

    def __init__(self, kube: KubeClient, namespace: str) -> None:
        self.kube = kube
        self.ns = namespace

    async def get(self, kind: str, name: str) -> dict[str, Any] | None:
        resource = MANAGED[kind]
        try:
            return await self.kube.get(resource, name, self.ns if resource.namespaced else None)
        except ApiError as exc:
            if is_not_found(exc):
                return None
            raise

    async def operator(self, name: str) -> dict[str, Any] | None:
        try:
            return await self.kube.get(MULTINICOPERATORS, name, self.ns)
        except ApiError as exc:
            if is_not_found(exc):
                return None
            raise

    async def status(self, name: str) -> dict[str, Any]:
        obj = await self.operator(name)
        return dict((obj or {}).get("status") or {})

    async def secret_data(self, name: str) -> dict[str, str] | None:
        try:
            secret = await self.kube.get(SECRETS, name, self.ns)
        except ApiError as exc:
            if is_not_found(exc):
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    async def events(self, name: str) -> list[dict[str, Any]]:
        from multinic_ctrl.kube import CORE_EVENTS

        found = await self.kube.list(CORE_EVENTS, self.ns, field_selector=f"involvedObject.name={name}")
        return list(found.get("items") or [])

    async def has_event(self, name: str, reason: str, contains: str = "") -> bool:
        return any(e.get("reason") == reason and contains in e.get("message", "") for e in await self.events(name))


def new_namespace(plane: ControlPlane, prefix: str = "op") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    plane.kubectl("create", "namespace", name)
    return name
