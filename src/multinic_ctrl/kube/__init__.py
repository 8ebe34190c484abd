"""Generic Kubernetes machinery on raw watch streams: client, informer, store, work queue,
runner, leader election, patch helpers, event recorder and task supervision.

Knows nothing about MultiNic (any resource works), so the controller and the operator share it. Must not
import `multinic_ctrl.controller`, `.operator`, `.openstack` or `.db` (import-linter layers contract).
"""

from .client import (
    CONFIGMAPS,
    CORE_EVENTS,
    EVENTS_V1,
    LEASES,
    ApiError,
    JsonObj,
    KubeClient,
    Resource,
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
from .store import Store, label_index, namespace_index
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
    "LEASES",
    "ApiError",
    "BucketRateLimiter",
    "ConflictError",
    "Controller",
    "EventRecorder",
    "FakeClock",
    "Informer",
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
    "WorkQueue",
    "add_finalizer",
    "default_identity",
    "default_rate_limiter",
    "generation_changed",
    "has_finalizer",
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
]
