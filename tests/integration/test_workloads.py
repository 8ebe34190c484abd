"""Deployments and StatefulSets reach Ready on the workload control plane (kwok nodes).

Why: the operator installs the controller Deployment and a MariaDB StatefulSet and reports
their readiness in MultiNicOperator.status.  Its end-to-end tests need a cluster where
such workloads really roll out (controllers, scheduler, PVC binding) without a container
runtime; these tests prove the harness provides that.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client

from tests.support.control_plane import ControlPlane


async def _eventually(probe: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await probe():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _pod_template(app: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [
                {
                    "name": app,
                    # Never pulled: kwok only pretends to run containers.
                    "image": "registry.invalid/multinic/never-pulled:1",
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8082}},
                }
            ]
        },
    }


async def _new_namespace(api: client.ApiClient) -> str:
    name = f"w-{uuid.uuid4().hex[:8]}"
    await client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


async def test_fake_nodes_are_ready(workload_plane: ControlPlane, workload_api: client.ApiClient) -> None:
    """kwok registered the nodes and keeps them Ready."""
    nodes = await client.CoreV1Api(workload_api).list_node()
    ready = {
        n.metadata.name
        for n in nodes.items
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    }
    assert ready >= {"kwok-node-1", "kwok-node-2"}
    assert workload_plane.workloads_running


async def test_deployment_becomes_available(workload_api: client.ApiClient) -> None:
    """A Deployment's Pods are created, scheduled onto fake nodes and become Ready."""
    namespace = await _new_namespace(workload_api)
    apps = client.AppsV1Api(workload_api)
    # Plain manifests (the API accepts them; the stubs only know the model classes).
    body: Any = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "multinic-controller"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "multinic-controller"}},
            "template": _pod_template("multinic-controller"),
        },
    }
    await apps.create_namespaced_deployment(namespace, body)

    async def available() -> bool:
        d = await apps.read_namespaced_deployment_status("multinic-controller", namespace)
        return bool(d.status.available_replicas == 2 and d.status.updated_replicas == 2)

    await _eventually(available, 90, "Deployment multinic-controller to have 2 available replicas")
    pods = await client.CoreV1Api(workload_api).list_namespaced_pod(namespace)
    assert {p.spec.node_name for p in pods.items} <= {"kwok-node-1", "kwok-node-2"}
    assert all(p.status.phase == "Running" and p.status.pod_ip for p in pods.items)


async def test_statefulset_with_volume_claims_becomes_ready(workload_api: client.ApiClient) -> None:
    """A StatefulSet with volumeClaimTemplates gets bound PVCs and Ready Pods (MariaDB-like)."""
    namespace = await _new_namespace(workload_api)
    apps = client.AppsV1Api(workload_api)
    core = client.CoreV1Api(workload_api)
    service: Any = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "mariadb"},
        "spec": {"clusterIP": "None", "selector": {"app": "mariadb"}, "ports": [{"port": 3306}]},
    }
    await core.create_namespaced_service(namespace, service)
    body: Any = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "mariadb"},
        "spec": {
            "serviceName": "mariadb",
            "replicas": 2,
            "selector": {"matchLabels": {"app": "mariadb"}},
            "template": _pod_template("mariadb"),
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}},
                }
            ],
        },
    }
    await apps.create_namespaced_stateful_set(namespace, body)

    async def ready() -> bool:
        s = await apps.read_namespaced_stateful_set_status("mariadb", namespace)
        return bool(s.status.ready_replicas == 2)

    await _eventually(ready, 120, "StatefulSet mariadb to have 2 ready replicas")
    claims = await core.list_namespaced_persistent_volume_claim(namespace)
    assert sorted(c.metadata.name for c in claims.items) == ["data-mariadb-0", "data-mariadb-1"]
    assert all(c.status.phase == "Bound" for c in claims.items)
