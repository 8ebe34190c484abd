"""What the controller caches of each OpenstackConfig: everything it reads, nothing only the apiserver or kubectl
use. The cache lives as long as the process and holds every config: managedFields alone roughly doubled it, and
`kubectl apply`'s last-applied annotation is a second copy of the spec, inline password included."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from multinic_ctrl.controller.service import ControllerService
from multinic_ctrl.db import Database
from multinic_ctrl.kube import LAST_APPLIED
from multinic_ctrl.settings import Settings


def applied_config() -> dict[str, Any]:
    spec = {
        "vmNames": ["vm-1"],
        "subnetName": "k8s-subnet",
        "credentials": {"authURL": "https://ks", "username": "u", "password": "inline-secret"},
    }
    return {
        "metadata": {
            "name": "cfg",
            "namespace": "ns",
            "uid": "u-1",
            "resourceVersion": "7",
            "generation": 2,
            "creationTimestamp": "2026-12-02T10:00:00Z",
            "finalizers": ["multinic.example.com/interface-rows"],
            "annotations": {
                LAST_APPLIED: json.dumps({"spec": spec}),
                "multinic.example.com/trigger-request": "req-1",
            },
            "labels": {"team": "net"},
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": spec,
        "status": {"phase": "Synced", "vms": [{"name": "vm-1", "interfaces": [{"ownedBy": "ns/other"}]}]},
    }


class ListOnce:
    """The one LIST the informer makes before its watch (which never answers here)."""

    async def list(self, *_: Any, **__: Any) -> dict[str, Any]:
        return {"items": [applied_config()], "metadata": {"resourceVersion": "9"}}

    def watch_stream(self, *_: Any, **__: Any) -> Any:
        raise asyncio.CancelledError


async def test_cached_configs_keep_what_the_controller_reads_and_drop_bookkeeping() -> None:
    settings = Settings()
    service = ControllerService(settings, Database(settings.database))
    (informer,) = service.make_config_informers(ListOnce(), ["ns"])  # type: ignore[arg-type]
    await informer._relist()
    cached = service.configs.get("ns/cfg")
    assert cached is not None
    expected = applied_config()
    del expected["metadata"]["managedFields"]
    del expected["metadata"]["annotations"][LAST_APPLIED]
    assert cached == {**expected, "apiVersion": "multinic.example.com/v1alpha1", "kind": "OpenstackConfig"}
    assert "inline-secret" not in json.dumps(cached["metadata"])
    assert informer.store.index_keys("conflicts", "ns/other") == ["ns/cfg"], "indexes still see the status"
