"""Generic Kubernetes machinery on raw watch streams: client, informer, store, work queue,
runner, leader election, patch helpers, event recorder and task supervision.

Knows nothing about MultiNic (any resource works), so the controller and the operator share it. Must not
import `multinic_ctrl.controller`, `.operator`, `.openstack` or `.db` (import-linter layers contract).

Wiring a controller (see tests/integration/test_leader.py::test_full_wiring_with_graceful_shutdown)::

    client = await KubeClient.from_config()                  # kubeconfig / in-cluster
    informer = Informer(client, RESOURCE, namespace=ns)        # LIST+WATCH, store, watchdog, 410 relist
    recorder = EventRecorder(client, "multinic-controller")

    async def reconcile(key: str) -> Result | None:
        obj = informer.store.get(key)                          # deep copy; None once deleted
        ...                                                    # read, decide (pure), write (merge_patch, ...)
        return Result(requeue_after=300)                       # or DONE / Result(requeue=True) / raise

    controller = Controller("openstackconfig", reconcile, workers=4)
    controller.watch(informer)                                 # events → keys → WorkQueue
    elector = LeaderElector(client, name="multinic-controller", namespace=ns)
    sup = Supervisor()
    sup.spawn("informer", informer.run()); sup.spawn("events", recorder.run())
    sup.spawn("leader", elector.run(controller.run_workers))   # workers only while leading
    # /healthz → sup.alive(); exit 1 when `await sup.wait_failed()` returns;
    # on SIGTERM: await sup.shutdown(10, drain=lambda: controller.shutdown(8))
"""

from .client import (
    CONFIGMAPS,
    CORE_EVENTS,
    EVENTS_V1,
    LEASES,
    ApiError,
    InvalidObjectName,
    JsonObj,
    KubeClient,
    Resource,
    checked_segment,
    is_conflict,
    is_gone,
    is_not_found,
    load_api_client,
    object_key,
    split_key,
)
from .events import EventRecorder
from .informer import Informer
from .leader import LeaderElector, default_identity
from .patch import (
    ConflictError,
    add_finalizer,
    has_finalizer,
    is_being_deleted,
    merge_patch,
    patch_status,
    remove_finalizer,
)
from .runner import DONE, Controller, Result, generation_changed, owner_keys
from .store import LAST_APPLIED, Store, Transform, identity_only, label_index, namespace_index, without_bookkeeping
from .supervisor import Supervisor
from .workqueue import (
    BucketRateLimiter,
    FakeClock,
    ItemExponentialRateLimiter,
    MaxOfRateLimiter,
    ShutDown,
    WorkQueue,
    default_rate_limiter,
)

__all__ = [
    "CONFIGMAPS",
    "CORE_EVENTS",
    "DONE",
    "EVENTS_V1",
    "LAST_APPLIED",
    "LEASES",
    "ApiError",
    "BucketRateLimiter",
    "ConflictError",
    "Controller",
    "EventRecorder",
    "FakeClock",
    "Informer",
    "InvalidObjectName",
    "ItemExponentialRateLimiter",
    "JsonObj",
    "KubeClient",
    "LeaderElector",
    "MaxOfRateLimiter",
    "Resource",
    "Result",
    "ShutDown",
    "Store",
    "Supervisor",
    "Transform",
    "WorkQueue",
    "add_finalizer",
    "checked_segment",
    "default_identity",
    "default_rate_limiter",
    "generation_changed",
    "has_finalizer",
    "identity_only",
    "is_being_deleted",
    "is_conflict",
    "is_gone",
    "is_not_found",
    "label_index",
    "load_api_client",
    "merge_patch",
    "namespace_index",
    "object_key",
    "owner_keys",
    "patch_status",
    "remove_finalizer",
    "split_key",
    "without_bookkeeping",
]
