"""The real control plane and the project's CRDs behave as the controller will rely on.

Why these tests: the controller is built on CRD schema validation (bad specs never reach
the reconciler), list+watch with resourceVersions, and a status subresource that cannot
change spec.  Each is demonstrated here against a real kube-apiserver through
kubernetes-asyncio, the client the product uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.support.control_plane import CRD_DIR, ControlPlane, new_api_client

GROUP = "multinic.example.com"
VERSION = "v1alpha1"
PLURAL = "openstackconfigs"


def openstack_config(name: str) -> dict[str, Any]:
    """A valid OpenstackConfig as in MISSION.md."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OpenstackConfig",
        "metadata": {"name": name},
        "spec": {
            "vmNames": ["test-vm-1", "test-vm-2"],
            "subnetName": "k8s-subnet",
            "credentials": {
                "authURL": "http://keystone.invalid:5000",
                "username": "admin",
                "passwordSecretRef": {"name": "openstack", "key": "password"},
                "projectID": "p-1",
                "domainName": "Default",
            },
        },
    }


async def _established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    crd = await ext.read_custom_resource_definition(name)
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


async def test_crd_manifests_apply_and_become_established(kube_api: client.ApiClient) -> None:
    """Every manifest in manifests/crds/ is accepted (structural schema) and gets served."""
    ext = client.ApiextensionsV1Api(kube_api)
    paths = sorted(CRD_DIR.glob("*.yaml"))
    assert len(paths) >= 2
    names = []
    for path in paths:
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        names.append(name)
        try:
            await ext.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = await ext.read_custom_resource_definition(name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            await ext.replace_custom_resource_definition(name, body)
    for name in names:
        for _ in range(200):
            if await _established(ext, name):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"CRD {name} never became Established")
        crd = await ext.read_custom_resource_definition(name)
        nonstructural = [c for c in crd.status.conditions or [] if c.type == "NonStructuralSchema"]
        assert not nonstructural, f"{name}: {nonstructural}"
    assert set(names) == {f"openstackconfigs.{GROUP}", f"multinicoperators.{GROUP}"}


@pytest.mark.usefixtures("multinic_crds")
async def test_create_list_watch_and_status_subresource(kube_api: client.ApiClient, namespace: str) -> None:
    """Create, list, watch an OpenstackConfig; status goes through /status, which ignores spec."""
    api = client.CustomObjectsApi(kube_api)
    name = f"osc-{uuid.uuid4().hex[:6]}"

    created = await api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, openstack_config(name))
    assert created["metadata"]["generation"] == 1

    listed = await api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert [item["metadata"]["name"] for item in listed["items"]] == [name]
    list_rv = listed["metadata"]["resourceVersion"]

    # Watch from the list's resourceVersion: exactly the later changes must arrive.
    events: list[tuple[str, dict[str, Any]]] = []
    seen_status = asyncio.Event()

    async def consume() -> None:
        w = watch.Watch()
        async with w:
            async for event in w.stream(
                api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                resource_version=list_rv,
                timeout_seconds=30,
            ):
                events.append((event["type"], event["raw_object"]))
                if event["raw_object"].get("status", {}).get("phase") == "Ready":
                    seen_status.set()
                    return

    watcher = asyncio.create_task(consume())
    try:
        # Status update through the subresource; the sneaked-in spec change must be dropped.
        # A list body makes kubernetes-asyncio send a JSON patch; for a dict body it would
        # also pick application/json-patch+json (the first listed type), which the server
        # rejects, so merge patches need the untyped ``_content_type=...`` override.
        status_patch = [
            {"op": "add", "path": "/status", "value": {"phase": "Ready", "interfaces": 2}},
            {"op": "replace", "path": "/spec/subnetName", "value": "hijacked"},
        ]
        patched = await api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, status_patch)
        assert patched["status"] == {"phase": "Ready", "interfaces": 2}
        assert patched["spec"]["subnetName"] == "k8s-subnet"
        assert patched["metadata"]["generation"] == 1, "status writes must not bump generation"
        await asyncio.wait_for(seen_status.wait(), timeout=20)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    assert [kind for kind, _ in events] == ["MODIFIED"]
    assert events[0][1]["status"]["phase"] == "Ready"

    # And the main resource ignores status: a spec update keeps the status, bumps generation.
    current = await api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    body = copy.deepcopy(current)
    body["spec"]["vmNames"] = ["test-vm-3"]
    body["status"] = {"phase": "Forged"}
    updated = await api.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body)
    assert updated["spec"]["vmNames"] == ["test-vm-3"]
    assert updated["status"]["phase"] == "Ready"
    assert updated["metadata"]["generation"] == 2


def _body(exc: ApiException) -> str:
    """The Status body of an API error as text."""
    body = exc.body
    return body.decode() if isinstance(body, bytes) else str(body)


def _without(spec: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != key}


INVALID_SPECS: dict[str, tuple[Any, str]] = {
    "vmNames-not-an-array": (lambda s: {**s, "vmNames": "x"}, "spec.vmNames"),
    "vmNames-empty": (lambda s: {**s, "vmNames": []}, "spec.vmNames"),
    "subnetName-missing": (lambda s: _without(s, "subnetName"), "spec.subnetName"),
    "credentials-wrong-type": (lambda s: {**s, "credentials": "admin:admin"}, "spec.credentials"),
    "secretRef-without-key": (
        lambda s: {**s, "credentials": {**s["credentials"], "passwordSecretRef": {"name": "x"}}},
        "spec.credentials.passwordSecretRef.key",
    ),
}


@pytest.mark.usefixtures("multinic_crds")
@pytest.mark.parametrize("case", sorted(INVALID_SPECS))
async def test_invalid_openstack_config_is_rejected(kube_api: client.ApiClient, namespace: str, case: str) -> None:
    """The apiserver's schema validation rejects malformed specs with 422 Unprocessable Entity."""
    mutate, field = INVALID_SPECS[case]
    body = openstack_config(f"bad-{uuid.uuid4().hex[:6]}")
    body["spec"] = mutate(body["spec"])
    api = client.CustomObjectsApi(kube_api)
    with pytest.raises(ApiException) as info:
        await api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert info.value.status == 422, _body(info.value)
    assert field in _body(info.value)
    listed = await api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert listed["items"] == []


@pytest.mark.usefixtures("multinic_crds")
async def test_multinicoperator_trigger_mode_enum_and_default(kube_api: client.ApiClient, namespace: str) -> None:
    """reconcileTrigger.mode defaults to immediate and rejects unknown modes."""
    api = client.CustomObjectsApi(kube_api)
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MultiNicOperator",
        "metadata": {"name": "production-system"},
        "spec": {
            "controller": {"image": "multinic:v1alpha1", "replicas": 2},
            "reconcileTrigger": {"interval": "15m"},
        },
    }
    created = await api.create_namespaced_custom_object(GROUP, VERSION, namespace, "multinicoperators", body)
    assert created["spec"]["reconcileTrigger"]["mode"] == "immediate"

    body["metadata"]["name"] = "bad-mode"
    body["spec"]["reconcileTrigger"] = {"mode": "hourly"}
    with pytest.raises(ApiException) as info:
        await api.create_namespaced_custom_object(GROUP, VERSION, namespace, "multinicoperators", body)
    assert info.value.status == 422
    assert "spec.reconcileTrigger.mode" in _body(info.value)


async def test_apiserver_restart_keeps_data_and_audit_log(
    control_plane: ControlPlane, kube_api: client.ApiClient, namespace: str
) -> None:
    """Stopping only the apiserver keeps etcd's data; every request lands in the audit log."""
    core = client.CoreV1Api(kube_api)
    await core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="survivor"), data={"k": "v"})
    )

    await asyncio.to_thread(control_plane.stop_apiserver)
    assert not control_plane.apiserver_running
    with pytest.raises(Exception):  # noqa: B017 - any connection error will do
        await core.read_namespaced_config_map("survivor", namespace, _request_timeout=2)
    await asyncio.to_thread(control_plane.start_apiserver)

    cm = await core.read_namespaced_config_map("survivor", namespace)
    assert cm.data == {"k": "v"}
    creates = [
        e
        for e in control_plane.audit_events()
        if e["verb"] == "create"
        and e.get("objectRef", {}).get("resource") == "configmaps"
        and e.get("objectRef", {}).get("namespace") == namespace
    ]
    assert creates and creates[0]["level"] == "Metadata"
    assert "requestObject" not in creates[0]


async def test_service_account_identity_is_restricted_by_rbac(control_plane: ControlPlane, namespace: str) -> None:
    """A ServiceAccount kubeconfig authenticates but is denied what RBAC does not grant."""
    kubeconfig = control_plane.service_account_kubeconfig(namespace, "restricted")
    api = await new_api_client(kubeconfig)
    try:
        core = client.CoreV1Api(api)
        with pytest.raises(ApiException) as info:
            await core.list_namespaced_secret(namespace)
        assert info.value.status == 403
        assert f"system:serviceaccount:{namespace}:restricted" in _body(info.value)
    finally:
        await api.close()
